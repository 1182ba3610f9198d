//! Topic specifications and naming.
//!
//! Every case study lists its topics in its own `topics.rs` as [`TopicSpec`] constants: the
//! architecture slide in code. One function, [`TopicSpec::full_name`], makes every topic name, so
//! a prefix (`alice.`) isolates a workshop attendee and a case study never collides with another:
//! `<prefix><case study>.<topic>`, e.g. `alice.movieflix.show_position`.

use std::time::Duration;

/// How long a topic keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Delete segments older than this (`retention.ms`).
    Time(Duration),
    /// Keep forever (`retention.ms=-1`): the log is the source of truth.
    Forever,
}

impl Retention {
    pub const fn hours(h: u64) -> Self {
        Retention::Time(Duration::from_secs(h * 3600))
    }
    pub const fn days(d: u64) -> Self {
        Retention::Time(Duration::from_secs(d * 24 * 3600))
    }
    /// The `retention.ms` topic config value.
    pub fn as_ms(&self) -> i64 {
        match self {
            Retention::Time(d) => d.as_millis() as i64,
            Retention::Forever => -1,
        }
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Forever => f.write_str("forever"),
            Retention::Time(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// `cleanup.policy`: delete old segments, keep the latest record per key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    Delete,
    Compact,
    CompactDelete,
}

impl Cleanup {
    /// The `cleanup.policy` topic config value.
    pub fn as_config(&self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
            Cleanup::Compact => "compact",
            Cleanup::CompactDelete => "compact,delete",
        }
    }
}

impl std::fmt::Display for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_config())
    }
}

/// One topic of an architecture: what it is called, how it is keyed and sized, who writes and
/// who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The case study (crate) the topic belongs to, e.g. `movieflix`.
    pub case_study: &'static str,
    /// The topic's name in the case study's notes, e.g. `show_position`.
    pub name: &'static str,
    /// What the record key is, e.g. `user_id`: it decides partitioning and ordering.
    pub key: &'static str,
    pub partitions: i32,
    pub retention: Retention,
    pub cleanup: Cleanup,
    /// One line: why the topic exists.
    pub purpose: &'static str,
    pub producers: &'static [&'static str],
    pub consumers: &'static [&'static str],
}

/// Suffix of a topic's dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Partitions of every dead-letter topic: low volume by design, and ordering does not matter.
pub const DLQ_PARTITIONS: i32 = 3;

/// Long enough for someone to look at a dead letter after a weekend and a holiday.
pub const DLQ_RETENTION: Retention = Retention::days(14);

impl TopicSpec {
    /// The topic's name on the broker: `<prefix><case study>.<topic>`.
    pub fn full_name(&self, prefix: &str) -> String {
        topic_name(prefix, self.case_study, self.name)
    }

    /// The dead-letter topic's name, if anybody consumes this topic (only consumers dead-letter).
    pub fn dlq_name(&self, prefix: &str) -> Option<String> {
        (!self.consumers.is_empty()).then(|| dlq_name(&self.full_name(prefix)))
    }

    /// The topics to create on the broker for this spec: the topic itself and its dead-letter
    /// topic, with their physical settings.
    pub fn physical(&self, prefix: &str) -> Vec<PhysicalTopic> {
        let topic = PhysicalTopic {
            name: self.full_name(prefix),
            partitions: self.partitions,
            retention: self.retention,
            cleanup: self.cleanup,
        };
        let dlq = self.dlq_name(prefix).map(|name| PhysicalTopic {
            name,
            partitions: DLQ_PARTITIONS,
            retention: DLQ_RETENTION,
            cleanup: Cleanup::Delete,
        });
        std::iter::once(topic).chain(dlq).collect()
    }
}

/// A topic as the broker sees it: what [`crate::provision`] creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalTopic {
    pub name: String,
    pub partitions: i32,
    pub retention: Retention,
    pub cleanup: Cleanup,
}

/// `<prefix><case study>.<topic>`: the one place topic names are made.
pub fn topic_name(prefix: &str, case_study: &str, topic: &str) -> String {
    format!("{prefix}{case_study}.{topic}")
}

/// The dead-letter topic of a topic name: `<topic>.dlq`.
pub fn dlq_name(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: TopicSpec = TopicSpec {
        case_study: "movieflix",
        name: "show_position",
        key: "user_id",
        partitions: 32,
        retention: Retention::days(7),
        cleanup: Cleanup::Delete,
        purpose: "test",
        producers: &["video position service"],
        consumers: &["resuming service"],
    };

    #[test]
    fn names_carry_prefix_and_case_study() {
        assert_eq!(SPEC.full_name("alice."), "alice.movieflix.show_position");
        assert_eq!(SPEC.full_name(""), "movieflix.show_position");
    }

    #[test]
    fn consumed_topics_get_a_dead_letter_topic() {
        let physical = SPEC.physical("bob.");
        assert_eq!(physical.len(), 2);
        assert_eq!(physical[0].name, "bob.movieflix.show_position");
        assert_eq!(physical[0].partitions, 32);
        assert_eq!(physical[1].name, "bob.movieflix.show_position.dlq");
        assert_eq!(physical[1].partitions, DLQ_PARTITIONS);
        let unconsumed = TopicSpec {
            consumers: &[],
            ..SPEC
        };
        assert_eq!(
            unconsumed.physical("").len(),
            1,
            "nobody consumes it, nobody dead-letters"
        );
    }

    #[test]
    fn retention_as_config() {
        assert_eq!(Retention::days(7).as_ms(), 604_800_000);
        assert_eq!(Retention::Forever.as_ms(), -1);
        assert_eq!(Retention::hours(1).to_string(), "1h");
        assert_eq!(Cleanup::CompactDelete.as_config(), "compact,delete");
    }
}
