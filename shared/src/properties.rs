//! Kafka Connect–style `.properties` files: `key=value` lines, `#`/`!` comments, and a ` # …`
//! after a value as a comment too (as in the course's examples). Unknown keys are an error that
//! names the key and its line, to catch typos; every later error names the key it is about.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

/// The parsed properties of one file, each remembered with its line.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    values: BTreeMap<String, (usize, String)>,
}

impl Properties {
    /// Parses `text`, accepting only `known` keys (and any key starting with one of
    /// `known_prefixes`, e.g. `consumer.override.`).
    pub fn parse(text: &str, known: &[&str], known_prefixes: &[&str]) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let line = match line.find(" #") {
                Some(at) => line[..at].trim_end(),
                None => line,
            };
            let (key, value) = line
                .split_once(['=', ':'])
                .with_context(|| format!("line {number}: expected key=value, got {line:?}"))?;
            let key = key.trim();
            let allowed = known.contains(&key) || known_prefixes.iter().any(|p| key.starts_with(p));
            if !allowed {
                bail!(
                    "line {number}: unknown property {key:?} (known: {})",
                    known
                        .iter()
                        .copied()
                        .chain(known_prefixes.iter().map(|p| &p[..]))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some((first, _)) = values.get(key) {
                bail!("line {number}: {key} is set twice (first on line {first})");
            }
            values.insert(key.to_owned(), (number, value.trim().to_owned()));
        }
        Ok(Properties { values })
    }

    /// Reads and parses a file; errors name the file.
    pub fn read(
        path: &std::path::Path,
        known: &[&str],
        known_prefixes: &[&str],
    ) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, known, known_prefixes).with_context(|| format!("{}", path.display()))
    }

    /// Sets `key` (an override from the environment or the command line).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_owned(), (0, value.into()));
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> anyhow::Result<&str> {
        self.get(key)
            .with_context(|| format!("missing property {key}"))
    }

    /// `key` parsed as `T`, or `default` when it is absent; an error names the key and value.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{key}={v:?}{}: not a valid {}",
                    self.line(key),
                    std::any::type_name::<T>()
                )
            }),
        }
    }

    /// `key` as milliseconds (`default` when absent).
    pub fn millis(&self, key: &str, default: u64) -> anyhow::Result<Duration> {
        match self.get(key) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => v
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| anyhow::anyhow!("{key}={v:?}{}: not a number of ms", self.line(key))),
        }
    }

    /// Every `(key without prefix, value)` of the keys starting with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.values
            .iter()
            .filter_map(move |(k, (_, v))| Some((k.strip_prefix(prefix)?, v.as_str())))
    }

    /// " (line n)" for a key read from the file, "" for one set in code.
    pub fn line(&self, key: &str) -> String {
        match self.values.get(key) {
            Some((line, _)) if *line > 0 => format!(" (line {line})"),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_values_and_prefixed_keys() {
        let props = Properties::parse(
            "# a comment\n! another\nname = s3-sink\nflush.size=100   # rows\nconsumer.override.fetch.min.bytes: 1\n\n",
            &["name", "flush.size"],
            &["consumer.override."],
        )
        .unwrap();
        assert_eq!(props.get("name"), Some("s3-sink"));
        assert_eq!(props.parse_or("flush.size", 0u64).unwrap(), 100);
        assert_eq!(props.parse_or("absent", 7u64).unwrap(), 7);
        assert_eq!(
            props.with_prefix("consumer.override.").collect::<Vec<_>>(),
            [("fetch.min.bytes", "1")]
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let unknown = Properties::parse("name=x\nflush.sise=5\n", &["name", "flush.size"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("line 2") && unknown.contains("flush.sise"),
            "{unknown}"
        );
        let twice = Properties::parse("name=x\nname=y\n", &["name"], &[])
            .unwrap_err()
            .to_string();
        assert!(twice.contains("name is set twice"), "{twice}");
        let props = Properties::parse("flush.size=many\n", &["flush.size"], &[]).unwrap();
        let bad = props.parse_or("flush.size", 1u64).unwrap_err().to_string();
        assert!(bad.contains("flush.size=\"many\" (line 1)"), "{bad}");
        let bad = props.millis("flush.size", 1).unwrap_err().to_string();
        assert!(bad.contains("not a number of ms"), "{bad}");
        let missing = props.require("name").unwrap_err().to_string();
        assert_eq!(missing, "missing property name");
        assert!(Properties::parse("no separator\n", &[], &[]).is_err());
    }
}
