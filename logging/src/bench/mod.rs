//! `logging bench …`: Logging's performance figures, each measured in one run (run them with
//! `--release`).
//!
//! * [`index`] — parse + index lines/s per core, and write → searchable latency.

pub mod index;

use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// The log parser and the log sink on one broker: lines/s per core, write → searchable p50/p99.
    Index(index::IndexBenchArgs),
}

pub async fn run(
    command: BenchCommand,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Index(args) => index::run(&args, kafka, stop).await,
    }
}
