//! The sink's configuration, in code ([`SinkConfig::new`], what the analytics sinks use) or in
//! Kafka Connect's vocabulary from a `.properties` file ([`SinkConfig::from_properties`], what
//! an S3 sink connector takes).

use std::time::Duration;

use anyhow::{Context, bail};

use super::layout::{Layout, Partitioner, PathFormat, TimestampSource};
use super::store::{S3Options, Store};
use crate::kafka::Kafka;
use crate::properties::Properties;

/// Where and how often to write.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Consumer group (a sink is a consumer group, like a Connect sink connector:
    /// `connect-<name>`).
    pub group_id: String,
    /// The topic (full name).
    pub topic: String,
    pub store: Store,
    pub layout: Layout,
    /// `flush.size`: a file is committed at this many records.
    pub flush_size: usize,
    /// `rotate.interval.ms`: a file is committed when a record's timestamp is this far past the
    /// file's first record's (record time: a replay makes the same files).
    pub rotate_interval: Option<Duration>,
    /// `rotate.schedule.interval.ms`: a file is committed when it has been open this long by
    /// the wall clock, records or not — so a quiet partition's rows still reach the store.
    pub rotate_schedule_interval: Option<Duration>,
    /// `buffer.max.bytes` (not Connect's): the records held in open files, across every
    /// partition, stay under this; past it the largest open file is committed early. Memory is
    /// bounded whatever the number of partitions.
    pub buffer_max_bytes: usize,
    pub consumer_properties: Vec<(String, String)>,
    /// Which cluster's offsets the file names hold ([`super::recovery::bind_to_cluster`]; set
    /// by the sink when it starts).
    pub generation: u32,
}

impl SinkConfig {
    /// The analytics tables' defaults: files under `<store>/<topic>/date=…/hour=…/` by event
    /// time, at most 50,000 rows, committed within 10 s.
    pub fn new(group_id: String, topic: String, store: Store) -> Self {
        SinkConfig {
            group_id,
            topic,
            store,
            layout: Layout::default(),
            flush_size: 50_000,
            rotate_interval: None,
            rotate_schedule_interval: Some(Duration::from_secs(10)),
            buffer_max_bytes: 64 << 20,
            consumer_properties: Vec::new(),
            generation: 0,
        }
    }

    /// A sink connector's configuration from its properties, Kafka Connect's S3 sink names.
    /// The topic gets the environment's prefix (`TOPIC_PREFIX`), as every topic here does.
    /// Errors name the property.
    pub fn from_properties(properties: &Properties, kafka: &Kafka) -> anyhow::Result<SinkConfig> {
        let p = properties;
        let get = |key: &str| p.get(key).map(str::trim).filter(|v| !v.is_empty());
        let name = p.require("name")?.to_owned();
        if let Some(class) = get("connector.class")
            && !class.ends_with("S3SinkConnector")
        {
            bail!(
                "connector.class={class}{}: this is an S3 sink (io.confluent.connect.s3.S3SinkConnector)",
                p.line("connector.class")
            );
        }
        if p.parse_or("tasks.max", 1u32)? != 1 {
            bail!(
                "tasks.max={}{}: one task per sink process here; run more processes with the same name to share the partitions",
                p.get("tasks.max").unwrap_or_default(),
                p.line("tasks.max")
            );
        }
        let topics = p.require("topics")?;
        let topic = match topics.split(',').map(str::trim).collect::<Vec<_>>()[..] {
            [topic] if !topic.is_empty() => topic,
            _ => bail!(
                "topics={topics}{}: one topic per sink here (run a sink per topic)",
                p.line("topics")
            ),
        };
        if let Some(format) = get("format.class")
            && !format.ends_with("ParquetFormat")
        {
            bail!(
                "format.class={format}{}: only io.confluent.connect.s3.format.parquet.ParquetFormat is supported",
                p.line("format.class")
            );
        }
        let partitioner = match get("partitioner.class")
            .unwrap_or("io.confluent.connect.storage.partitioner.TimeBasedPartitioner")
        {
            class if class.ends_with(".TimeBasedPartitioner") => {
                let format = PathFormat::parse(p.require("path.format")?)
                    .with_context(|| format!("path.format{}", p.line("path.format")))?;
                let duration = p.millis("partition.duration.ms", 3_600_000)?;
                if duration.is_zero() {
                    bail!(
                        "partition.duration.ms{}: must be positive",
                        p.line("partition.duration.ms")
                    );
                }
                Partitioner::TimeBased { format, duration }
            }
            class if class.ends_with(".DefaultPartitioner") => Partitioner::Default,
            class => bail!(
                "partitioner.class={class}{}: TimeBasedPartitioner or DefaultPartitioner (io.confluent.connect.storage.partitioner.*)",
                p.line("partitioner.class")
            ),
        };
        if let Some(zone) = get("timezone")
            && !matches!(zone, "UTC" | "Etc/UTC" | "GMT")
        {
            bail!(
                "timezone={zone}{}: paths are in UTC here",
                p.line("timezone")
            );
        }
        let timestamps = match get("timestamp.extractor").unwrap_or("RecordField") {
            "RecordField" => TimestampSource::RecordField,
            "Record" => TimestampSource::Record,
            "Wallclock" => TimestampSource::Wallclock,
            other => bail!(
                "timestamp.extractor={other}{}: Record, RecordField (the event's own time) or Wallclock",
                p.line("timestamp.extractor")
            ),
        };
        let flush_size: usize = p.parse_or("flush.size", 0)?;
        if flush_size == 0 {
            bail!(
                "flush.size{}: required, a positive number of records per file",
                p.line("flush.size")
            );
        }
        let optional_millis = |key: &str| -> anyhow::Result<Option<Duration>> {
            Ok(Some(p.millis(key, 0)?).filter(|d| !d.is_zero()))
        };
        let pad: usize = p.parse_or("filename.offset.zero.pad.width", 10)?;
        if !(1..=20).contains(&pad) {
            bail!(
                "filename.offset.zero.pad.width={pad}{}: 1 to 20",
                p.line("filename.offset.zero.pad.width")
            );
        }
        let store = store(p)?;
        let buffer_max_bytes: usize = p.parse_or("buffer.max.bytes", 64 << 20)?;
        if buffer_max_bytes < 1 << 20 {
            bail!(
                "buffer.max.bytes={buffer_max_bytes}{}: at least 1 MiB",
                p.line("buffer.max.bytes")
            );
        }
        Ok(SinkConfig {
            group_id: format!("{}connect-{name}", kafka.prefix()),
            topic: format!("{}{topic}", kafka.prefix()),
            store,
            layout: Layout {
                topics_dir: get("topics.dir")
                    .unwrap_or("topics")
                    .trim_matches('/')
                    .to_owned(),
                folder: None,
                partitioner,
                timestamps,
                pad,
            },
            flush_size,
            rotate_interval: optional_millis("rotate.interval.ms")?,
            rotate_schedule_interval: optional_millis("rotate.schedule.interval.ms")?,
            buffer_max_bytes,
            consumer_properties: p
                .with_prefix("consumer.override.")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            generation: 0,
        })
    }
}

/// Every property [`SinkConfig::from_properties`] reads (others are an error, to catch typos).
pub const KNOWN_PROPERTIES: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "topics",
    "store.url",
    "s3.bucket.name",
    "s3.region",
    "aws.access.key.id",
    "aws.secret.access.key",
    "topics.dir",
    "format.class",
    "flush.size",
    "rotate.interval.ms",
    "rotate.schedule.interval.ms",
    "partitioner.class",
    "path.format",
    "partition.duration.ms",
    "locale",
    "timezone",
    "timestamp.extractor",
    "filename.offset.zero.pad.width",
    "buffer.max.bytes",
];

/// Property prefixes passed through: `consumer.override.<consumer property>`.
pub const KNOWN_PREFIXES: &[&str] = &["consumer.override."];

/// `store.url` and `s3.bucket.name`: with a bucket, an S3-compatible endpoint (`store.url`,
/// Connect's meaning) or AWS itself (no `store.url`); without one, a local directory.
fn store(p: &Properties) -> anyhow::Result<Store> {
    let url = p.get("store.url").map(str::trim).filter(|v| !v.is_empty());
    let bucket = p
        .get("s3.bucket.name")
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match bucket {
        Some(bucket) => {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bail!(
                    "store.url={url}{}: with s3.bucket.name, the S3 endpoint (http(s)://host:port)",
                    p.line("store.url")
                );
            }
            Store::s3(&S3Options {
                bucket: bucket.to_owned(),
                endpoint: url.map(str::to_owned),
                region: p.get("s3.region").map(str::to_owned),
                access_key_id: p.get("aws.access.key.id").map(str::to_owned),
                secret_access_key: p.get("aws.secret.access.key").map(str::to_owned),
            })
            .with_context(|| format!("s3.bucket.name={bucket}{}", p.line("s3.bucket.name")))
        }
        None => {
            let url = url.with_context(
                || "store.url: required — a local directory (file:///…), or set s3.bucket.name",
            )?;
            if url.starts_with("http://") || url.starts_with("https://") {
                bail!(
                    "store.url={url}{}: an S3 endpoint needs s3.bucket.name",
                    p.line("store.url")
                );
            }
            Store::from_url(url).with_context(|| format!("store.url={url}{}", p.line("store.url")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "
name=raw-events-s3
connector.class=io.confluent.connect.s3.S3SinkConnector
tasks.max=1
topics=raw_events
store.url=file:///DIR
topics.dir=topics
format.class=io.confluent.connect.s3.format.parquet.ParquetFormat
flush.size=1000
rotate.interval.ms=60000
rotate.schedule.interval.ms=5000
partitioner.class=io.confluent.connect.storage.partitioner.TimeBasedPartitioner
path.format='date'=YYYY-MM-dd/'hour'=HH
partition.duration.ms=3600000
locale=en-US
timezone=UTC
timestamp.extractor=RecordField
consumer.override.max.poll.records=500
";

    fn parse(text: &str) -> anyhow::Result<SinkConfig> {
        let dir = std::env::temp_dir().join(format!("sink-config-{}", std::process::id()));
        let text = text.replace("/DIR", &dir.display().to_string());
        let props = Properties::parse(&text, KNOWN_PROPERTIES, KNOWN_PREFIXES)?;
        let kafka = Kafka::external("127.0.0.1:9", "ws1.", Vec::new());
        SinkConfig::from_properties(&props, &kafka)
    }

    #[test]
    fn reads_a_connect_s3_sink_configuration() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.group_id, "ws1.connect-raw-events-s3");
        assert_eq!(config.topic, "ws1.raw_events");
        assert_eq!(config.flush_size, 1000);
        assert_eq!(config.rotate_interval, Some(Duration::from_secs(60)));
        assert_eq!(
            config.rotate_schedule_interval,
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.layout.topics_dir, "topics");
        assert_eq!(config.layout.timestamps, TimestampSource::RecordField);
        assert_eq!(
            config.consumer_properties,
            [("max.poll.records".to_owned(), "500".to_owned())]
        );
        assert!(config.store.local_dir().is_some());
    }

    #[test]
    fn a_bad_file_names_the_key() {
        let with = |from: &str, to: &str| {
            assert!(EXAMPLE.contains(from), "{from}");
            parse(&EXAMPLE.replace(from, to)).unwrap_err()
        };
        for (from, to, key) in [
            ("flush.size=1000", "flush.size=0", "flush.size"),
            ("flush.size=1000", "flush.size=lots", "flush.size"),
            ("flush.size=1000\n", "", "flush.size"),
            (
                "rotate.interval.ms=60000",
                "rotate.interval.ms=1m",
                "rotate.interval.ms",
            ),
            ("topics=raw_events", "topics=a,b", "topics"),
            ("ParquetFormat", "JsonFormat", "format.class"),
            ("'hour'=HH", "'hour'=hh", "path.format"),
            ("timezone=UTC", "timezone=Europe/Paris", "timezone"),
            ("tasks.max=1", "tasks.max=4", "tasks.max"),
            (
                "store.url=file:///DIR",
                "store.url=http://127.0.0.1:9000",
                "store.url",
            ),
            ("store.url=file:///DIR\n", "", "store.url"),
            (
                "timestamp.extractor=RecordField",
                "timestamp.extractor=Field",
                "timestamp.extractor",
            ),
            (
                "TimeBasedPartitioner",
                "FieldPartitioner",
                "partitioner.class",
            ),
            ("flush.size=1000", "flush.sise=1000", "flush.sise"),
        ] {
            let err = format!("{:#}", with(from, to));
            assert!(err.contains(key), "{from} → {to}: {err}");
        }
    }
}
