//! `logging bench …`: measurements, never tests (speed is measured here, reported with the
//! command that measured it; the tests assert behaviour only). Run them with `--release`.
//!
//! | subcommand | what | file |
//! |---|---|---|
//! | `forwarder` | one file of log lines shipped to `application_logs` by our forwarder, then by rsyslog (`imfile` → `omkafka`): lines/s, MB/s, the ratio | [`forwarder`] |
//! | `index` | the log parser and the log sink on one broker: parse + index lines/s per core, write → searchable p50/p99 | [`index`] |

pub mod forwarder;
pub mod index;

use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Our forwarder against rsyslog omkafka on the same file of log lines: lines/s, MB/s.
    Forwarder(forwarder::ForwarderBenchArgs),
    /// The log parser and the log sink on one broker: lines/s per core, write → searchable p50/p99.
    Index(index::IndexBenchArgs),
}

pub async fn run(
    command: BenchCommand,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Forwarder(args) => forwarder::run(args, kafka, stop).await,
        BenchCommand::Index(args) => index::run(&args, kafka, stop).await,
    }
}
