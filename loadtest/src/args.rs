//! Command-line flags, parsed by hand: `--name value`, `--name=value`, and switches
//! (`--spawn`) that take no value. Each scenario asks for the flags it knows with a
//! default; [`Flags::finish`] then refuses whatever nobody asked for, so a typo
//! fails loudly instead of running with a default.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

/// Flags that never take a value.
const SWITCHES: &[&str] = &["spawn", "help", "stop-on-eof", "ping", "drain"];

/// Parsed flags, consumed by name.
#[derive(Debug)]
pub struct Flags {
    values: BTreeMap<String, String>,
    switches: BTreeSet<String>,
    asked: RefCell<BTreeSet<String>>,
}

impl Flags {
    /// Parses `args` (without the program name and the subcommand).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, String> {
        let mut values = BTreeMap::new();
        let mut switches = BTreeSet::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" {
                switches.insert("help".to_owned());
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}' (flags start with --)"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (flag.to_owned(), None),
            };
            if SWITCHES.contains(&name.as_str()) {
                if value.is_some() {
                    return Err(format!("--{name} takes no value"));
                }
                switches.insert(name);
                continue;
            }
            let value = match value {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?,
            };
            if values.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Flags {
            values,
            switches,
            asked: RefCell::default(),
        })
    }

    /// Whether switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.asked.borrow_mut().insert(name.to_owned());
        self.switches.contains(name)
    }

    /// The value of `--name`, if given.
    pub fn opt<T: FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.asked.borrow_mut().insert(name.to_owned());
        match self.values.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| format!("--{name} '{raw}': {e}")),
        }
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    /// A count that must be at least 1.
    pub fn count(&self, name: &str, default: usize) -> Result<usize, String> {
        match self.get(name, default)? {
            0 => Err(format!("--{name} must be at least 1")),
            n => Ok(n),
        }
    }

    /// A positive number (a rate, a duration in seconds).
    pub fn positive(&self, name: &str, default: f64) -> Result<f64, String> {
        let value: f64 = self.get(name, default)?;
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(format!("--{name} must be a positive number"))
        }
    }

    /// Fails on any flag that no one asked for.
    pub fn finish(&self) -> Result<(), String> {
        let asked = self.asked.borrow();
        let unknown: Vec<String> = self
            .values
            .keys()
            .chain(&self.switches)
            .filter(|name| !asked.contains(*name))
            .map(|name| format!("--{name}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown flag(s) {}", unknown.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, String> {
        Flags::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn values_switches_and_defaults() {
        let f = flags(&["--clients", "200", "--spawn", "--rate=2.5"]).unwrap();
        assert_eq!(f.count("clients", 1), Ok(200));
        assert!(f.switch("spawn"));
        assert_eq!(f.positive("rate", 1.0), Ok(2.5));
        assert_eq!(f.get("hold", 7u32), Ok(7));
        assert_eq!(f.opt::<String>("json"), Ok(None));
        assert_eq!(f.finish(), Ok(()));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert!(flags(&["clients"]).is_err_and(|e| e.contains("start with --")));
        assert!(flags(&["--clients"]).is_err_and(|e| e.contains("needs a value")));
        assert!(flags(&["--spawn=yes"]).is_err_and(|e| e.contains("no value")));
        assert!(flags(&["--rate", "1", "--rate", "2"]).is_err_and(|e| e.contains("twice")));
        let f = flags(&["--clients", "many", "--clinets", "3"]).unwrap();
        assert!(f.count("clients", 1).is_err_and(|e| e.contains("'many'")));
        assert_eq!(f.finish(), Err("unknown flag(s) --clinets".to_owned()));
        let zero = flags(&["--clients", "0", "--rate", "-1"]).unwrap();
        assert!(zero.count("clients", 1).is_err());
        assert!(zero.positive("rate", 1.0).is_err());
    }
}
