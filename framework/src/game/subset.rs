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
    let items = items.into_iter();
    // Most rooms show everyone one state: the first group is made as large as all
    // the items can be, and later ones grow as they need.
    let mut first = items.size_hint().1.unwrap_or(0);
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    // A few groups are searched in order; past `INDEX_AT`, through an index.
    let mut index: Option<HashMap<K, usize>> = None;
    for (key, item) in items {
        let found = match &index {
            Some(index) => index.get(&key).copied(),
            None => groups.iter().position(|(k, _)| *k == key),
        };
        match found {
            Some(i) => groups[i].1.push(item),
            None => {
                if let Some(index) = &mut index {
                    index.insert(key.clone(), groups.len());
                } else if groups.len() == INDEX_AT {
                    let mut built: HashMap<K, usize> = groups
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect();
                    built.insert(key.clone(), groups.len());
                    index = Some(built);
                }
                let mut group = Vec::with_capacity(std::mem::take(&mut first).max(1));
                group.push(item);
                groups.push((key, group));
            }
        }
    }
    groups
}

/// How many groups [`group_by_subset`] searches in order before it builds an index.
const INDEX_AT: usize = 8;

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

    #[test]
    fn many_subsets_group_the_same_past_the_index() {
        // 20 subsets (past the 8 searched in order), interleaved.
        let items: Vec<(u32, u32)> = (0..200).map(|i| ((i * 7) % 20, i)).collect();
        let groups = group_by_subset(items.clone());
        assert_eq!(groups.len(), 20);
        let mut seen = Vec::new();
        for (key, members) in &groups {
            let expected: Vec<u32> = items
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(members, &expected, "subset {key}");
            seen.push(*key);
        }
        let mut first_seen: Vec<u32> = Vec::new();
        for (k, _) in &items {
            if !first_seen.contains(k) {
                first_seen.push(*k);
            }
        }
        assert_eq!(seen, first_seen);
    }
}
