//! The object-store sink (`shared::analytics`), configured as a Kafka Connect S3 sink from a
//! `.properties` file and run as a child process (`sink-child`), against a local directory and
//! a real S3 server (moto, `shared::testkit::s3`).
//!
//! The sink is crashed at every awkward point — before an upload, between the upload and the
//! offset commit, after the commit, in a rotation — and SIGKILLed, with more records produced
//! between the crashes. Afterwards every (partition, offset) of the topic is in exactly one
//! file, every file holds exactly the range its name says, and the store shows nothing but
//! whole files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use shared::EventProducer;
use shared::analytics::Store;
use shared::analytics::layout::parse_file_name;
use shared::analytics::store::S3Options;
use shared::testkit::TestKafka;
use shared::testkit::eventually;
use shared::testkit::s3::S3Server;
use tests::{Ping, SINK_PINGS};

/// Where a test's files go.
enum Target {
    Local(tempfile::TempDir),
    S3(S3Options),
}

impl Target {
    async fn local() -> Target {
        Target::Local(tempfile::tempdir().unwrap())
    }

    async fn s3() -> Target {
        let server = tokio::task::spawn_blocking(S3Server::shared)
            .await
            .unwrap()
            .expect("moto's S3 server");
        Target::S3(server.new_bucket().await.unwrap())
    }

    fn properties(&self) -> String {
        match self {
            Target::Local(dir) => format!("store.url=file://{}\n", dir.path().display()),
            Target::S3(s3) => format!(
                "store.url={}\ns3.bucket.name={}\ns3.region=us-east-1\naws.access.key.id={}\naws.secret.access.key={}\n",
                s3.endpoint.as_deref().unwrap(),
                s3.bucket,
                s3.access_key_id.as_deref().unwrap(),
                s3.secret_access_key.as_deref().unwrap()
            ),
        }
    }

    fn store(&self) -> Store {
        match self {
            Target::Local(dir) => Store::local(dir.path()).unwrap(),
            Target::S3(s3) => Store::s3(s3).unwrap(),
        }
    }
}

/// A Connect S3 sink's properties for the test topic.
fn properties(target: &Target, flush_size: usize, schedule_ms: u64, extra: &str) -> String {
    format!(
        "name=sink-test
connector.class=io.confluent.connect.s3.S3SinkConnector
tasks.max=1
topics=test.sink_pings
{}topics.dir=topics
format.class=io.confluent.connect.s3.format.parquet.ParquetFormat
flush.size={flush_size}
rotate.schedule.interval.ms={schedule_ms}
partitioner.class=io.confluent.connect.storage.partitioner.TimeBasedPartitioner
path.format='date'=YYYY-MM-dd/'hour'=H
partition.duration.ms=3600000
locale=en-US
timezone=UTC
timestamp.extractor=RecordField
# A crashed member leaves the group within seconds, so the next one gets its partitions.
consumer.override.session.timeout.ms=6000
consumer.override.heartbeat.interval.ms=500
{extra}",
        target.properties()
    )
}

struct Sink {
    child: Child,
    _config: tempfile::NamedTempFile,
}

impl Sink {
    fn start(kafka: &TestKafka, properties: &str, crash: Option<&str>) -> Sink {
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(config.path(), properties).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sink-child"));
        command
            .args(["--bootstrap", kafka.kafka().bootstrap_servers()])
            .args(["--prefix", kafka.kafka().prefix()])
            .arg("--config")
            .arg(config.path())
            .env("RUST_LOG", "warn")
            .env_remove("ANALYTICS_SINK_CRASH")
            .stdout(Stdio::null());
        if let Some(crash) = crash {
            command.env("ANALYTICS_SINK_CRASH", crash);
        }
        Sink {
            child: command.spawn().unwrap(),
            _config: config,
        }
    }

    /// Waits for the process to end on its own (a crash point).
    async fn crashed(mut self, what: &str) -> ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sink never reached {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces pings `from..from + n` over 16 keys, their event times 20 s apart from `base`, so
/// each partition's records move through the hours in order (and files rotate).
async fn produce(kafka: &TestKafka, base: DateTime<Utc>, from: u64, n: u64) -> BTreeSet<String> {
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&SINK_PINGS);
    let mut ids = BTreeSet::new();
    for seq in from..from + n {
        let mut ping = Ping::new(seq, format!("k{}", seq % 16));
        ping.at = base + chrono::TimeDelta::seconds(20 * seq as i64);
        producer.publish(&topic, &ping.key, &ping).await.unwrap();
        ids.insert(ping.id);
    }
    ids
}

/// One row read back: its id and where it came from.
#[derive(Debug)]
struct Row {
    id: String,
    partition: i32,
    offset: i64,
}

/// Every file of the test topic in the store, with its rows; panics on any object that is not
/// a whole file of the topic (or the cluster stamp).
async fn files(store: &Store, topic: &str) -> Vec<(String, Vec<Row>)> {
    let mut files = Vec::new();
    for path in store.list(&format!("topics/{topic}").into()).await.unwrap() {
        let name = path.filename().unwrap().to_owned();
        if name == "_cluster" {
            continue;
        }
        assert!(
            parse_file_name(topic, &name).is_some(),
            "only whole files are visible: {path}"
        );
        let bytes: Bytes = store.read(&path).await.unwrap().unwrap();
        let reader = SerializedFileReader::new(bytes).unwrap();
        let rows = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                Row {
                    id: row.get_string(0).unwrap().clone(),
                    partition: row.get_int(4).unwrap(),
                    offset: row.get_long(5).unwrap(),
                }
            })
            .collect();
        files.push((name, rows));
    }
    files
}

/// The checks of exactly once: each file holds exactly its name's range of its partition, no
/// (partition, offset) is in two files, and the files hold exactly the ids produced.
fn check_exactly_once(files: &[(String, Vec<Row>)], topic: &str, produced: &BTreeSet<String>) {
    let mut seen: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (name, rows) in files {
        let range = parse_file_name(topic, name).unwrap();
        let offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (range.start..=range.end).collect::<Vec<_>>(),
            "{name} holds exactly its range"
        );
        for row in rows {
            assert_eq!(row.partition, range.partition, "{name}");
            if let Some(other) = seen.insert((row.partition, row.offset), name) {
                panic!(
                    "partition {} offset {} is in {other} and in {name}",
                    row.partition, row.offset
                );
            }
            assert!(ids.insert(row.id.clone()), "{} twice", row.id);
        }
    }
    assert_eq!(ids.len(), produced.len(), "every record is in a file");
    assert_eq!(&ids, produced);
    // Each partition's offsets are contiguous from 0: nothing skipped.
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in seen.keys() {
        by_partition.entry(*partition).or_default().push(*offset);
    }
    for (partition, offsets) in by_partition {
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
}

/// Staged uploads a crash left on disk (`…#n`): the sink removes them when it recovers.
fn staged_files(dir: &Path) -> Vec<PathBuf> {
    shared::analytics::files_under(dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect()
}

async fn crash_everywhere(target: Target) {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[SINK_PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&SINK_PINGS);
    let store = target.store();
    let base = Utc::now() - chrono::TimeDelta::days(1);
    let mut produced = produce(&kafka, base, 0, 1_200).await;
    let mut next = 1_200;
    // Files of 25 rows, never committed by the clock: whatever is buffered at a crash is
    // mid-file.
    let crashing = properties(&target, 25, 0, "");
    for crash in [
        "before-upload:3",
        "after-upload:4",
        "rotation:2",
        "after-commit:5",
        "after-upload:1",
        "before-upload:1",
    ] {
        let status = Sink::start(&kafka, &crashing, Some(crash))
            .crashed(crash)
            .await;
        assert!(!status.success(), "{crash}: {status}");
        produced.extend(produce(&kafka, base, next, 150).await);
        next += 150;
    }
    // SIGKILL with files being written.
    let sink = Sink::start(&kafka, &crashing, None);
    let before = files(&store, &topic).await.len();
    eventually(Duration::from_secs(120), "new files", || async {
        (files(&store, &topic).await.len() > before + 3).then_some(())
    })
    .await;
    sink.kill();
    produced.extend(produce(&kafka, base, next, 150).await);
    // A last sink that commits what it holds within half a second, until every record is in.
    let draining = properties(&target, 25, 500, "");
    let sink = Sink::start(&kafka, &draining, None);
    let total = produced.len();
    eventually(
        Duration::from_secs(180),
        "every record in a file",
        || async {
            let rows: usize = files(&store, &topic).await.iter().map(|f| f.1.len()).sum();
            (rows >= total).then_some(())
        },
    )
    .await;
    sink.kill();
    let files = files(&store, &topic).await;
    check_exactly_once(&files, &topic, &produced);
    assert!(
        files.len() > total / 25,
        "flush.size and rotation made files of at most 25 rows: {} files",
        files.len()
    );
    if let Target::Local(dir) = &target {
        assert_eq!(staged_files(dir.path()), Vec::<PathBuf>::new());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_local_directory_every_offset_is_in_exactly_one_file_across_crashes_at_every_point() {
    crash_everywhere(Target::local().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_s3_every_offset_is_in_exactly_one_file_across_crashes_at_every_point() {
    crash_everywhere(Target::s3().await).await;
}

/// `buffer.max.bytes` bounds what the open files hold: with a 1 MiB budget and a `flush.size`
/// never reached, the largest open file is committed early, again and again.
#[tokio::test(flavor = "multi_thread")]
async fn the_memory_budget_commits_the_largest_open_file_early() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[SINK_PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&SINK_PINGS);
    let target = Target::local().await;
    let store = target.store();
    let base = Utc::now() - chrono::TimeDelta::minutes(30);
    // About 210 bytes a record: 12,000 records are about 2.5 MiB, across 4 partitions, all in
    // one hour folder.
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    for seq in 0..12_000u64 {
        let mut ping = Ping::new(seq, format!("k{}", seq % 16));
        ping.at = base;
        producer.publish(&topic, &ping.key, &ping).await.unwrap();
    }
    let sink = Sink::start(
        &kafka,
        &properties(&target, 1_000_000, 0, "buffer.max.bytes=1048576\n"),
        None,
    );
    let files = eventually(
        Duration::from_secs(120),
        "files before flush.size",
        || async {
            let files = files(&store, &topic).await;
            (files.len() >= 2).then_some(files)
        },
    )
    .await;
    sink.kill();
    for (name, rows) in &files {
        // 1 MiB over ~4 open files: the largest holds a bit more than a quarter of it.
        assert!(
            rows.len() < 6_000,
            "{name}: {} rows, more than the budget holds",
            rows.len()
        );
    }
}
