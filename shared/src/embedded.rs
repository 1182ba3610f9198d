//! The embedded broker: librdkafka's mock cluster, in-process, listening on loopback TCP.
//!
//! It speaks the real Kafka protocol, so services, `kcat` and a second process all talk to it
//! as to any cluster. It is what `cargo run` uses when `KAFKA_BOOTSTRAP_SERVERS` is not set.
//!
//! Two of its gaps shape this module: it ignores `CreateTopics` (so topics are created through
//! the mock API, see [`EmbeddedBroker::create_topic`]), and it does not hide aborted
//! transactions (so nothing here relies on transactions).
//!
//! `rdkafka::mocking::MockCluster` holds a raw pointer and is neither `Send` nor `Sync`; rather
//! than assert thread-safety with `unsafe`, one thread owns the cluster for its whole life and
//! the rest of the program sends it commands.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use rdkafka::mocking::MockCluster;

/// A topic every embedded broker creates at start, holding one record: a random id of this
/// broker's life (its *incarnation*). The mock cluster's own cluster id is made from a memory
/// address, which a later cluster may reuse, and it starts empty every time: local state is tied
/// to the incarnation instead ([`crate::cluster`]).
pub const INCARNATION_TOPIC: &str = "__embedded_broker_incarnation";

/// Brokers in the embedded cluster: three, so replication and leaders look like production.
pub const EMBEDDED_BROKERS: i32 = 3;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        replication: i32,
        reply: mpsc::Sender<anyhow::Result<()>>,
    },
}

/// A running mock cluster. Dropping it stops the cluster.
pub struct EmbeddedBroker {
    bootstrap: String,
    /// A random id of this broker's life, also the one record of [`INCARNATION_TOPIC`].
    incarnation: String,
    commands: Option<mpsc::Sender<Command>>,
    owner: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a mock cluster of [`EMBEDDED_BROKERS`] brokers on random loopback ports.
    pub fn start() -> anyhow::Result<Self> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let owner = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(EMBEDDED_BROKERS) {
                    Ok(cluster) => cluster,
                    Err(err) => {
                        let _ = ready_tx.send(Err(anyhow!("cannot start the mock cluster: {err}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve commands until every sender is gone, then drop (stop) the cluster.
                for command in inbox {
                    match command {
                        Command::CreateTopic {
                            name,
                            partitions,
                            replication,
                            reply,
                        } => {
                            let result = cluster
                                .create_topic(&name, partitions, replication)
                                .map_err(|err| anyhow!("mock cluster cannot create {name}: {err}"));
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .context("spawning the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("the embedded broker thread died while starting")??;
        let incarnation = uuid::Uuid::new_v4().to_string();
        let broker = EmbeddedBroker {
            bootstrap,
            incarnation,
            commands: Some(commands),
            owner: Some(owner),
        };
        broker.create_topic(INCARNATION_TOPIC, 1, 1)?;
        broker.record_incarnation()?;
        let bootstrap = broker.bootstrap.clone();
        tracing::info!(
            bootstrap_servers = %bootstrap, incarnation = %broker.incarnation,
            "embedded Kafka broker (librdkafka mock cluster) listening; inspect it with `kcat -b {bootstrap} -L`"
        );
        Ok(broker)
    }

    /// Writes the incarnation to [`INCARNATION_TOPIC`], for clients in other processes.
    fn record_incarnation(&self) -> anyhow::Result<()> {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("a producer for the incarnation record")?;
        producer
            .send(BaseRecord::<(), str>::to(INCARNATION_TOPIC).payload(&self.incarnation))
            .map_err(|(err, _)| {
                anyhow!("cannot record the embedded broker's incarnation: {err}")
            })?;
        producer
            .flush(std::time::Duration::from_secs(10))
            .context("cannot record the embedded broker's incarnation")?;
        Ok(())
    }

    /// This broker's incarnation (see [`INCARNATION_TOPIC`]).
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// `host:port,...` of the mock brokers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic through the mock API (the mock cluster ignores `CreateTopics`).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
    ) -> anyhow::Result<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("commands live until drop")
            .send(Command::CreateTopic {
                name: name.to_owned(),
                partitions,
                replication: replication.min(EMBEDDED_BROKERS),
                reply,
            })
            .map_err(|_| anyhow!("the embedded broker has stopped"))?;
        answer
            .recv()
            .map_err(|_| anyhow!("the embedded broker has stopped"))?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.commands.take()); // ends the owner's command loop
        if let Some(owner) = self.owner.take() {
            let _ = owner.join();
        }
    }
}
