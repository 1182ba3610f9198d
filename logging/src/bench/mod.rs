//! `logging bench …`: measurements, never tests (speed is measured here, reported with the
//! command that measured it; the tests assert behaviour only).
//!
//! | subcommand | what | file |
//! |---|---|---|
//! | `forwarder` | one file of log lines shipped to `application_logs` by our forwarder, then by rsyslog (`imfile` → `omkafka`): lines/s, MB/s, the ratio | [`forwarder`] |

pub mod forwarder;

use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Our forwarder against rsyslog omkafka on the same file of log lines: lines/s, MB/s.
    Forwarder(forwarder::ForwarderBenchArgs),
}

pub async fn run(
    command: BenchCommand,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Forwarder(args) => forwarder::run(args, kafka, stop).await,
    }
}
