//! What an application is: its user code ([`Processor`]) and its configuration
//! ([`StreamsConfig`]: inputs, stores, internal topics, guarantee).

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::changelog;
use super::context::ProcessorContext;
use super::guarantee::Guarantee;
use super::order::TaskIdle;
use crate::consumer::HandlerError;
use crate::kafka::Kafka;

/// User code of a streams application.
pub trait Processor: Send + 'static {
    /// The input records' value type (JSON). Undecodable records go to `<topic>.dlq`.
    type Input: DeserializeOwned;

    /// Decodes a record's payload from `topic`. The default decodes `Self::Input` as JSON; an
    /// application with several inputs of different types decodes per topic, so a dead letter
    /// names the type that topic carries and serde's reason (not "did not match any variant").
    fn decode(&self, topic: &str, payload: &[u8]) -> Result<Self::Input, String> {
        let _ = topic;
        crate::consumer::json(payload)
    }

    /// Handles one record. Writes and emits are committed with the batch; on `Err` they are
    /// undone (`Permanent` → dead-letter the record, `Transient` → retry it with backoff).
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        value: Self::Input,
    ) -> Result<(), HandlerError>;

    /// The key a record of `topic` must have, from its payload (e.g. `user_id` for a store keyed
    /// by user), or `None` when any key will do. A record whose key differs — or is null — is
    /// dead-lettered before `process` sees it, with the reason `key "X" does not match user_id
    /// "Y"` ([`crate::consumer::check_key`]): every stateful processor declares its inputs' keys,
    /// so none folds a record into a task where queries never look.
    fn key_of<'v>(
        &self,
        topic: &str,
        value: &'v Self::Input,
    ) -> Option<crate::consumer::PayloadKey<'v>> {
        let _ = (topic, value);
        None
    }

    /// Called once per task after the records of a batch were processed, before the batch
    /// commits, in the coordinates of the task's last record: where updates collected per key
    /// are emitted once (a hot key's thousand updates in one batch become one output record —
    /// state and changelog are already written once per key per batch). Emits and writes
    /// commit with the batch; on `Err` they are undone and logged.
    fn end_batch(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Called every `punctuate_every` (wall clock) for each open task.
    fn punctuate(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// What a streams application is.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group, the state directory and the internal topics (prefixed).
    pub application_id: String,
    /// Input topics (full names), co-partitioned.
    pub inputs: Vec<String>,
    /// State store names.
    pub stores: Vec<String>,
    /// Where task databases live: `<state_dir>/<partition>/`.
    pub state_dir: PathBuf,
    /// Records in a batch at most (a batch is processed, then committed).
    pub batch_size: usize,
    /// How long a batch waits for more records after its first one, before it takes what has
    /// already arrived and is processed: the latency/throughput knob. Default 0 — a record is
    /// processed as soon as it is polled, and batches still grow under load because records
    /// arrive while the previous batch is processed. A linger makes fewer, larger commits
    /// (less CPU per record at a low rate) and adds up to itself to every hop.
    pub batch_linger: Duration,
    pub punctuate_every: Option<Duration>,
    /// Extra consumer properties (e.g. `session.timeout.ms`); they override the runtime's
    /// `fetch.wait.max.ms=10`.
    pub consumer_properties: Vec<(String, String)>,
    /// This instance's HTTP endpoint (`http://host:port`), announced to the other instances so
    /// queries for keys it owns reach it (Kafka Streams' `application.server`).
    pub endpoint: Option<String>,
    /// Global tables: `(topic, store)` pairs, each materialized in full on every instance
    /// (read them with `ProcessorContext::global_get`).
    pub global_tables: Vec<(String, String)>,
    /// Internal repartition topics (full names, see [`StreamsConfig::repartition`]): created
    /// with the inputs' partition count. Add them to `inputs` to consume them.
    pub repartitions: Vec<String>,
    /// At-least-once with exact state (default) or exactly-once through Kafka transactions
    /// (see [`super::guarantee`]); `PROCESSING_GUARANTEE` overrides it for every application.
    pub guarantee: Guarantee,
    /// How long a task waits for an input with nothing buffered before it processes the
    /// others' records (inputs are processed in time order: see [`super::order`]).
    pub task_idle: TaskIdle,
}

impl StreamsConfig {
    /// `application_id` is prefixed with the cluster handle's topic prefix; the state directory
    /// defaults to `$STATE_DIR/<prefixed id>` (`STATE_DIR` defaults to `./state`).
    pub fn new(kafka: &Kafka, application_id: &str, inputs: Vec<String>, stores: &[&str]) -> Self {
        let application_id = format!("{}{application_id}", kafka.prefix());
        let root =
            std::env::var_os("STATE_DIR").map_or_else(|| PathBuf::from("state"), PathBuf::from);
        StreamsConfig {
            state_dir: root.join(&application_id),
            application_id,
            inputs,
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
            batch_size: 5000,
            batch_linger: Duration::ZERO,
            punctuate_every: None,
            consumer_properties: Vec::new(),
            endpoint: None,
            global_tables: Vec::new(),
            repartitions: Vec::new(),
            guarantee: Guarantee::AtLeastOnce,
            task_idle: TaskIdle::default(),
        }
    }

    /// Declares an internal repartition topic `<app id>-<name>-repartition` and consumes it:
    /// emit records to it under a new key to re-key a stream (e.g. by the join key), and they
    /// come back to the task that owns that key. Returns its name.
    pub fn repartition(&mut self, name: &str) -> String {
        let topic = format!("{}-{name}-repartition", self.application_id);
        self.repartitions.push(topic.clone());
        self.inputs.push(topic.clone());
        topic
    }

    pub fn changelog(&self, store: &str) -> String {
        changelog::changelog_topic(&self.application_id, store)
    }
}
