//! Grouping players by the subset of the game state they see, so that each distinct
//! subset's state is computed and encoded once per broadcast whatever the number of
//! players in it.

use std::collections::HashMap;
use std::hash::Hash;

/// Groups `items` by key, keeping the order in which keys are first seen (so that a
/// broadcast visits subsets in a stable order) and the items' order inside a group.
pub fn group_by_subset<K, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)>
where
    K: Hash + Eq + Clone,
{
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for (key, item) in items {
        match index.get(&key) {
            Some(&i) => groups[i].1.push(item),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![item]));
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_per_distinct_key_in_first_seen_order() {
        let players = [
            ("red", 1),
            ("blue", 2),
            ("red", 3),
            ("spectator", 4),
            ("red", 5),
        ];
        let groups = group_by_subset(players);
        assert_eq!(
            groups,
            vec![
                ("red", vec![1, 3, 5]),
                ("blue", vec![2]),
                ("spectator", vec![4])
            ]
        );
        assert!(group_by_subset(Vec::<(u8, u8)>::new()).is_empty());
    }
}
