//! A Kafka Streams-style runtime: stateful stream processing with RocksDB state stores, changelog
//! topics, exact state under at-least-once delivery, windows and top-N. See `docs/STREAMS.md`.
//!
//! | file          | concept                                                                 |
//! |---------------|-------------------------------------------------------------------------|
//! | [`app`]       | the stream thread: poll a batch, process, commit; open and close tasks  |
//! | [`processor`] | what an application is: the `Processor` trait and `StreamsConfig`       |
//! | [`query`]     | interactive queries (`StoreReader`), the running app (`StreamsHandle`)  |
//! | `task`        | a task per input partition; the rebalance listener that assigns them    |
//! | [`order`]     | time order across a task's inputs: buffers, earliest first, idle wait   |
//! | `commit`      | committing a batch: outputs, changelog, markers, state, input offsets   |
//! | `delivery`    | a commit sleeps until delivery reports arrive (no busy polling)         |
//! | `restore`     | opening tasks: their RocksDBs brought up to date from their changelogs  |
//! | `lag`         | the lag gauge, computed on a thread of its own                          |
//! | [`context`]   | what a processor sees: record coordinates, stores, `emit`               |
//! | [`state`]     | a task's RocksDB: a column family per store, plus its checkpoint        |
//! | [`changelog`] | changelog topics, batch markers, and resolving a restore's tails        |
//! | [`count`]     | `CountByKey`: records per key, the reference stateful processor         |
//! | [`global`]    | global tables: a whole small topic on every instance                    |
//! | [`guarantee`] | at-least-once (default) or exactly-once through Kafka transactions      |
//! | [`instances`] | who owns which partition: announcing it, routing queries to the owner   |
//! | [`window`]    | tumbling/hopping windows, grace, retention                              |
//! | [`windowed`]  | windowed aggregation on a store: emit on update or on close, retention  |
//! | [`topn`]      | top-N with deterministic ties                                           |
//! | [`metrics`]   | per-application counters                                                |

pub mod app;
pub mod changelog;
mod commit;
pub mod context;
pub mod count;
mod delivery;
pub mod global;
pub mod guarantee;
pub mod instances;
mod lag;
pub mod metrics;
pub mod order;
pub mod processor;
pub mod query;
mod restore;
pub mod state;
mod task;
pub mod topn;
pub mod window;
pub mod windowed;

pub use app::{internal_topics, start};
pub use context::ProcessorContext;
pub use guarantee::Guarantee;
pub use instances::Route;
pub use order::TaskIdle;
pub use processor::{Processor, StreamsConfig};
pub use query::{Applied, StoreReader, StreamsHandle};
pub use window::{Window, Windows};
