//! A broker for each test, chosen by `CASESTUDIES_TEST_KAFKA`:
//!
//! | value                 | broker                                                              |
//! |-----------------------|---------------------------------------------------------------------|
//! | `embedded` (default)  | librdkafka's mock cluster, in this process                          |
//! | `apache`              | Apache Kafka (KRaft) as a child process, one per test binary         |
//! | `tansu`               | a `tansu broker` process (memory storage) on a free loopback port   |
//! | `testcontainers`      | a container: `apache/kafka` by default, or `KAFKA_TEST_IMAGE`       |
//! | `external`            | the cluster at `KAFKA_BOOTSTRAP_SERVERS`                            |
//!
//! Every [`TestKafka`] has its own random topic prefix and group ids, so tests run in parallel on
//! one broker without seeing each other's records. The broker process or container is stopped
//! when the `TestKafka` is dropped (the shared Apache Kafka process when the test binary exits).

pub mod apache;
mod containers;
mod guarded;
pub mod http;
pub mod s3;
mod tansu;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::dlq::DeadLetter;
use crate::embedded::EmbeddedBroker;
use crate::kafka::Kafka;
use crate::provision::{ProvisionReport, provision};
use crate::topics::{TopicSpec, dlq_name};

/// Which broker the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Apache,
    Tansu,
    Testcontainers,
    External,
}

impl Backend {
    /// `CASESTUDIES_TEST_KAFKA`, `embedded` when unset.
    pub fn from_env() -> anyhow::Result<Backend> {
        match std::env::var("CASESTUDIES_TEST_KAFKA")
            .as_deref()
            .unwrap_or("embedded")
        {
            "" | "embedded" => Ok(Backend::Embedded),
            "apache" => Ok(Backend::Apache),
            "tansu" => Ok(Backend::Tansu),
            "testcontainers" => Ok(Backend::Testcontainers),
            "external" => Ok(Backend::External),
            other => bail!(
                "CASESTUDIES_TEST_KAFKA={other:?}: expected embedded, apache, tansu, testcontainers or \
                 external"
            ),
        }
    }
}

/// Keeps the broker of a test alive (process, container or in-process cluster); never read,
/// held for its `Drop`.
#[allow(dead_code)]
enum Guard {
    None,
    Apache(Box<apache::ApacheKafka>),
    Tansu(tansu::TansuProcess),
    Container(Box<containers::KafkaContainer>),
}

/// A broker for one test, with a topic prefix and group ids no other test uses.
pub struct TestKafka {
    kafka: Kafka,
    backend: Backend,
    _guard: Guard,
}

impl TestKafka {
    /// Starts (or connects to) the broker `CASESTUDIES_TEST_KAFKA` names.
    pub async fn start() -> anyhow::Result<TestKafka> {
        crate::telemetry::init_for_tests();
        let backend = Backend::from_env()?;
        let prefix = format!("t{:08x}.", rand::random::<u32>());
        let (kafka, guard) = match backend {
            Backend::Embedded => {
                let broker = Arc::new(EmbeddedBroker::start()?);
                (Kafka::embedded(broker, &prefix), Guard::None)
            }
            Backend::Apache => {
                let per_test =
                    std::env::var("CASESTUDIES_APACHE_KAFKA").as_deref() == Ok("per-test");
                if per_test {
                    let broker = tokio::task::spawn_blocking(apache::ApacheKafka::start).await??;
                    (
                        Kafka::external(broker.bootstrap(), &prefix, Vec::new()),
                        Guard::Apache(Box::new(broker)),
                    )
                } else {
                    let broker = tokio::task::spawn_blocking(apache::ApacheKafka::shared).await??;
                    (
                        Kafka::external(broker.bootstrap(), &prefix, Vec::new()),
                        Guard::None,
                    )
                }
            }
            Backend::Tansu => {
                let process = tansu::TansuProcess::start().await?;
                (
                    Kafka::external(process.bootstrap(), &prefix, Vec::new()),
                    Guard::Tansu(process),
                )
            }
            Backend::Testcontainers => {
                let container = containers::KafkaContainer::start().await?;
                (
                    Kafka::external(container.bootstrap(), &prefix, Vec::new()),
                    Guard::Container(Box::new(container)),
                )
            }
            Backend::External => {
                let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                    .context("CASESTUDIES_TEST_KAFKA=external needs KAFKA_BOOTSTRAP_SERVERS")?;
                let properties = crate::config::client_properties_from_env(std::env::vars());
                (
                    Kafka::external(&bootstrap, &prefix, properties),
                    Guard::None,
                )
            }
        };
        if backend != Backend::Embedded {
            wait_until_ready(&kafka, Duration::from_secs(60)).await?;
        }
        Ok(TestKafka {
            kafka,
            backend,
            _guard: guard,
        })
    }

    /// The same broker under another test's topic prefix: its topic and group names (e.g. a
    /// new broker standing in for an old one, as after an embedded broker's restart).
    pub fn with_prefix(mut self, prefix: &str) -> TestKafka {
        self.kafka = self.kafka.with_prefix(prefix);
        self
    }

    /// The cluster, with this test's topic prefix.
    pub fn kafka(&self) -> &Kafka {
        &self.kafka
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether this broker runs transactions correctly: Apache Kafka (process, container or an
    /// external cluster) does; the mock cluster shows aborted records and tansu 0.6 rejects
    /// `EndTxn`.
    pub fn supports_transactions(&self) -> bool {
        match self.backend {
            Backend::Apache | Backend::External => true,
            Backend::Testcontainers => !containers::image_is_tansu(),
            Backend::Embedded | Backend::Tansu => false,
        }
    }

    /// A consumer group id unique to this test.
    pub fn group_id(&self, name: &str) -> String {
        format!("{}{name}", self.kafka.prefix())
    }

    /// Provisions `specs` under this test's prefix.
    pub async fn provision(&self, specs: &[TopicSpec]) -> anyhow::Result<ProvisionReport> {
        provision(&self.kafka, specs).await
    }

    /// The first `n` records of `topic` (all partitions, from the beginning, no consumer group),
    /// or an error naming how many arrived before `timeout`.
    pub async fn wait_for_records(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<OwnedMessage>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let consumer = self.assigned_reader(topic, timeout).await?;
        let mut records = Vec::with_capacity(n);
        while records.len() < n {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => records.push(message.detach()),
                Ok(Err(err)) => tracing::debug!(%err, "reader error"),
                Err(_) => {
                    return Err(anyhow!(
                        "only {} of {n} records arrived on {topic} within {timeout:?}",
                        records.len()
                    ));
                }
            }
        }
        Ok(records)
    }

    /// Every record of `topic`: reads from the beginning until nothing new arrives for `idle`.
    /// (Not from the high watermarks: tansu 0.6 under-reports them after batched writes.)
    pub async fn read_all(&self, topic: &str, idle: Duration) -> anyhow::Result<Vec<OwnedMessage>> {
        let consumer = self.assigned_reader(topic, Duration::from_secs(30)).await?;
        let mut records = Vec::new();
        while let Ok(received) = tokio::time::timeout(idle, consumer.recv()).await {
            match received {
                Ok(message) => records.push(message.detach()),
                Err(err) => tracing::debug!(%err, "reader error"),
            }
        }
        Ok(records)
    }

    /// A consumer assigned to every partition of `topic` from the beginning (no group).
    async fn assigned_reader(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = self
            .kafka
            .client_config()
            .set("group.id", self.group_id("reader"))
            .set("enable.auto.commit", "false")
            // librdkafka's default, stated: what a downstream application would see.
            .set("isolation.level", "read_committed")
            // A partition whose start offset resolves late joins the broker's next fetch; with
            // librdkafka's 500 ms fetch wait, that gap looked like "nothing more" to `read_all`.
            .set("fetch.wait.max.ms", "20")
            .create()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
            let count = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            if count > 0 {
                break count;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("topic {topic} does not exist");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// The first `n` dead letters of `topic`'s dead-letter topic.
    pub async fn read_dlq(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let dlq = dlq_name(topic);
        self.wait_for_records(&dlq, n, timeout)
            .await?
            .iter()
            .map(|m| {
                DeadLetter::from_message(m).ok_or_else(|| {
                    anyhow!(
                        "record at {}:{} lacks dead-letter headers",
                        m.partition(),
                        m.offset()
                    )
                })
            })
            .collect()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, and returns that; panics naming `what`
/// once `timeout` has passed. The one way tests wait for something asynchronous to happen: the
/// deadline bounds the wait, it is not a speed assertion.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the cluster answers a metadata request with at least one broker.
async fn wait_until_ready(kafka: &Kafka, timeout: Duration) -> anyhow::Result<()> {
    let readiness = crate::http::Readiness::new(kafka)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match readiness.check().await {
            Ok(brokers) if brokers > 0 => return Ok(()),
            result => {
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "broker at {} not ready after {timeout:?}: {result:?}",
                        kafka.bootstrap_servers()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A free TCP port on loopback (free when asked; the OS may hand it out again later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
