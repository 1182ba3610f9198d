//! A Kafka Streams-style runtime: stateful stream processing with RocksDB state stores, changelog
//! topics, exact state under at-least-once delivery, windows and top-N. See `docs/STREAMS.md`.
//!
//! | file          | concept                                                                 |
//! |---------------|-------------------------------------------------------------------------|
//! | [`app`]       | the stream thread: poll a batch, process, commit; tasks per partition   |
//! | [`context`]   | what a processor sees: record coordinates, stores, `emit`               |
//! | [`state`]     | a task's RocksDB: a column family per store, plus its checkpoint        |
//! | [`changelog`] | changelog topics, batch markers, and restore                           |
//! | [`count`]     | `CountByKey`: records per key, the reference stateful processor         |
//! | [`global`]    | global tables: a whole small topic on every instance                    |
//! | [`guarantee`] | at-least-once (default) or exactly-once through Kafka transactions      |
//! | [`instances`] | who owns which partition: routing interactive queries across instances  |
//! | [`window`]    | tumbling/hopping windows, grace, retention                              |
//! | [`windowed`]  | windowed aggregation on a store: emit on update or on close, retention  |
//! | [`topn`]      | top-N with deterministic ties                                           |
//! | [`metrics`]   | per-application counters                                                |

pub mod app;
pub mod changelog;
pub mod context;
pub mod count;
pub mod global;
pub mod guarantee;
pub mod instances;
pub mod metrics;
pub mod state;
pub mod topn;
pub mod window;
pub mod windowed;

pub use app::{Processor, StoreReader, StreamsConfig, StreamsHandle, start};
pub use context::ProcessorContext;
pub use guarantee::Guarantee;
pub use instances::Route;
pub use window::{Window, Windows};
