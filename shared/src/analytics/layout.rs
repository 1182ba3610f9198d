//! Where a record's file goes and what it is called — Kafka Connect's storage layout:
//!
//! ```text
//! <topics.dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start offset>+<end offset>.parquet
//! ```
//!
//! The *encoded partition* comes from the partitioner: the time-based one formats the record's
//! timestamp, floored to `partition.duration.ms`, with `path.format` (Joda-style, as in
//! Connect: `'date'=YYYY-MM-dd/'hour'=H`); the default one is `partition=<kafka partition>`.
//! The file name holds the contiguous offset range the file covers, zero-padded to
//! `filename.offset.zero.pad.width` digits so names sort by offset; that name is what makes the
//! sink exactly-once (see the module documentation of [`super`]).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, Datelike, Timelike, Utc};
use object_store::path::Path as ObjectPath;

/// How records are grouped into folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// Connect's `TimeBasedPartitioner`: the timestamp floored to `duration`, formatted.
    TimeBased {
        format: PathFormat,
        duration: Duration,
    },
    /// Connect's `DefaultPartitioner`: `partition=<kafka partition>`.
    Default,
}

/// Which timestamp the time-based partitioner and `rotate.interval.ms` use (Connect's
/// `timestamp.extractor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    /// `RecordField`: the record's own event time ([`super::AnalyticsRow::event_time`]).
    RecordField,
    /// `Record`: the Kafka record's timestamp.
    Record,
    /// `Wallclock`: the sink's clock when it reads the record.
    Wallclock,
}

/// The storage layout of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `topics.dir` (may be empty: the topic's folder is then at the store's root).
    pub topics_dir: String,
    /// The topic's folder when it is not the topic's name (an analytics table is named by the
    /// topic's short name, whatever the environment's prefix).
    pub folder: Option<String>,
    pub partitioner: Partitioner,
    pub timestamps: TimestampSource,
    /// `filename.offset.zero.pad.width`.
    pub pad: usize,
}

impl Default for Layout {
    /// The analytics tables' layout: `<topic>/date=YYYY-MM-DD/hour=H/…` by event time, offsets
    /// padded to 10 digits (Connect's default).
    fn default() -> Self {
        Layout {
            topics_dir: String::new(),
            folder: None,
            partitioner: Partitioner::TimeBased {
                format: PathFormat::parse("'date'=YYYY-MM-dd/'hour'=H").expect("a valid format"),
                duration: Duration::from_secs(3600),
            },
            timestamps: TimestampSource::RecordField,
            pad: 10,
        }
    }
}

/// One file's identity: its topic, Kafka partition and offset range, and the cluster
/// generation it belongs to ([`super::recovery::bind_to_cluster`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub generation: u32,
}

impl Layout {
    /// `<topics.dir>/<topic>`: every file of the topic is below it.
    pub fn topic_prefix(&self, topic: &str) -> ObjectPath {
        let topic = self.folder.as_deref().unwrap_or(topic);
        if self.topics_dir.is_empty() {
            ObjectPath::from(topic)
        } else {
            ObjectPath::from(format!("{}/{topic}", self.topics_dir.trim_matches('/')))
        }
    }

    /// The encoded partition (folder) of a record.
    pub fn encode_partition(&self, partition: i32, at: DateTime<Utc>) -> String {
        match &self.partitioner {
            Partitioner::Default => format!("partition={partition}"),
            Partitioner::TimeBased { format, duration } => {
                let step = i64::try_from(duration.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1);
                let floored = at.timestamp_millis().div_euclid(step) * step;
                format.render(DateTime::from_timestamp_millis(floored).unwrap_or(at))
            }
        }
    }

    /// `<topic>+<partition>+<start>+<end>.parquet` (`….g<n>.parquet` from the second cluster).
    pub fn file_name(&self, topic: &str, range: FileRange) -> String {
        let FileRange {
            partition,
            start,
            end,
            generation,
        } = range;
        let pad = self.pad;
        let suffix = match generation {
            0 => String::new(),
            g => format!(".g{g}"),
        };
        format!("{topic}+{partition}+{start:0pad$}+{end:0pad$}{suffix}.parquet")
    }

    /// The full path of a file.
    pub fn file_path(&self, topic: &str, encoded: &str, range: FileRange) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{encoded}/{}",
            self.topic_prefix(topic),
            self.file_name(topic, range)
        ))
    }
}

/// The range a file name of `topic` stands for, or `None` for any other object.
pub fn parse_file_name(topic: &str, name: &str) -> Option<FileRange> {
    let rest = name.strip_prefix(topic)?.strip_prefix('+')?;
    let rest = rest.strip_suffix(".parquet")?;
    let (rest, generation) = match rest.rsplit_once(".g") {
        Some((rest, g)) => (rest, g.parse().ok()?),
        None => (rest, 0),
    };
    let mut parts = rest.split('+');
    let partition = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    if parts.next().is_some() || start > end {
        return None;
    }
    Some(FileRange {
        partition,
        start,
        end,
        generation,
    })
}

/// A Joda-style date format as Connect's `path.format` takes it: `YYYY`/`yyyy`, `MM`/`M`,
/// `dd`/`d`, `HH`/`H`, `mm`/`m`, `ss`/`s`, and `'literal'` text; any other letter is an error
/// (so a typo is not silently copied into every path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFormat {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year,
    Month { padded: bool },
    Day { padded: bool },
    Hour { padded: bool },
    Minute { padded: bool },
    Second { padded: bool },
}

impl PathFormat {
    pub fn parse(format: &str) -> anyhow::Result<PathFormat> {
        let mut parts = Vec::new();
        let mut chars = format.chars().peekable();
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                let mut quoted = String::new();
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    quoted.push(q);
                }
                if !closed {
                    bail!("{format:?}: a quote is not closed");
                }
                literal.push_str(if quoted.is_empty() { "'" } else { &quoted });
                continue;
            }
            if !c.is_ascii_alphabetic() {
                literal.push(c);
                continue;
            }
            let mut run = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                run += 1;
            }
            let part = match (c, run) {
                ('Y' | 'y', 4) => Part::Year,
                ('M', 1 | 2) => Part::Month { padded: run == 2 },
                ('d', 1 | 2) => Part::Day { padded: run == 2 },
                ('H', 1 | 2) => Part::Hour { padded: run == 2 },
                ('m', 1 | 2) => Part::Minute { padded: run == 2 },
                ('s', 1 | 2) => Part::Second { padded: run == 2 },
                _ => bail!(
                    "{format:?}: {} is not a supported field (YYYY, MM, dd, HH, mm, ss; quote literal text: 'date')",
                    c.to_string().repeat(run)
                ),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if format.starts_with('/') || format.ends_with('/') || format.contains("//") {
            bail!("{format:?}: no empty folder names");
        }
        Ok(PathFormat {
            source: format.to_owned(),
            parts,
        })
    }

    /// The folder path of `at` (UTC).
    pub fn render(&self, at: DateTime<Utc>) -> String {
        let mut out = String::new();
        let number = |out: &mut String, value: u32, padded: bool| {
            if padded {
                let _ = write!(out, "{value:02}");
            } else {
                let _ = write!(out, "{value}");
            }
        };
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Year => {
                    let _ = write!(out, "{:04}", at.year());
                }
                Part::Month { padded } => number(&mut out, at.month(), *padded),
                Part::Day { padded } => number(&mut out, at.day(), *padded),
                Part::Hour { padded } => number(&mut out, at.hour(), *padded),
                Part::Minute { padded } => number(&mut out, at.minute(), *padded),
                Part::Second { padded } => number(&mut out, at.second(), *padded),
            }
        }
        out
    }
}

impl std::fmt::Display for PathFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn connect_path_formats_render_like_joda() {
        let format = PathFormat::parse("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH").unwrap();
        assert_eq!(
            format.render(at("2026-03-04T07:30:00Z")),
            "year=2026/month=03/day=04/hour=07"
        );
        let format = PathFormat::parse("'date'=YYYY-MM-dd/'hour'=H").unwrap();
        assert_eq!(
            format.render(at("2026-03-04T07:30:00Z")),
            "date=2026-03-04/hour=7"
        );
        assert_eq!(
            PathFormat::parse("yyyy/M/d/H-mm-ss")
                .unwrap()
                .render(at("2026-03-04T07:05:09Z")),
            "2026/3/4/7-05-09"
        );
        for bad in ["YYYY/ww", "'date=YYYY", "/YYYY", "YYYY//MM", "YY"] {
            assert!(PathFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hour_folders_are_integers_without_leading_zeros() {
        let layout = Layout::default();
        for (hour, expected) in [
            (0, "date=2026-11-02/hour=0"),
            (7, "date=2026-11-02/hour=7"),
            (13, "date=2026-11-02/hour=13"),
        ] {
            let dir = layout.encode_partition(0, at(&format!("2026-11-02T{hour:02}:30:00Z")));
            assert_eq!(dir, expected);
        }
    }

    #[test]
    fn the_partition_duration_floors_the_timestamp() {
        let layout = Layout {
            partitioner: Partitioner::TimeBased {
                format: PathFormat::parse("HH-mm").unwrap(),
                duration: Duration::from_secs(600),
            },
            ..Layout::default()
        };
        assert_eq!(
            layout.encode_partition(3, at("2026-11-02T10:39:59Z")),
            "10-30"
        );
        let default = Layout {
            partitioner: Partitioner::Default,
            ..Layout::default()
        };
        assert_eq!(
            default.encode_partition(3, at("2026-11-02T10:39:59Z")),
            "partition=3"
        );
    }

    #[test]
    fn file_names_hold_the_range_and_parse_back() {
        let layout = Layout {
            topics_dir: "topics".into(),
            ..Layout::default()
        };
        let range = FileRange {
            partition: 7,
            start: 42,
            end: 99,
            generation: 0,
        };
        let path = layout.file_path("raw_events", "date=2026-12-04/hour=5", range);
        assert_eq!(
            path.as_ref(),
            "topics/raw_events/date=2026-12-04/hour=5/raw_events+7+0000000042+0000000099.parquet"
        );
        assert_eq!(
            parse_file_name("raw_events", path.filename().unwrap()),
            Some(range)
        );
        let second = FileRange {
            generation: 2,
            ..range
        };
        let name = layout.file_name("raw_events", second);
        assert_eq!(name, "raw_events+7+0000000042+0000000099.g2.parquet");
        assert_eq!(parse_file_name("raw_events", &name), Some(second));
        for other in [
            "raw_events+7+42.parquet",
            "raw_events+7+50+40.parquet",
            "raw_eventsX+7+1+2.parquet",
            "raw+7+1+2.parquet",
            "raw_events+7+1+2.parquet#3",
            "_cluster",
        ] {
            assert_eq!(parse_file_name("raw_events", other), None, "{other}");
        }
        assert_eq!(
            Layout::default().topic_prefix("t").as_ref(),
            "t",
            "no topics.dir: the topic's folder is at the root"
        );
        let table = Layout {
            folder: Some("show_position".into()),
            ..Layout::default()
        };
        assert_eq!(
            table.topic_prefix("ws1.movieflix.show_position").as_ref(),
            "show_position"
        );
    }
}
