//! Logging's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `forward`, our log forwarder — a command, not a service: it runs next to the applications
//! whose logs it reads, one per host, not in the pipeline's processes — and `bench`
//! (measurements, [`crate::bench`]).

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Command {
    /// Our log forwarder: tails files (rotation-safe, positions persisted) and accepts syslog
    /// over TCP/UDP → application_logs, with back-pressure; flushes on shutdown.
    Forward(crate::forwarder::ForwardArgs),
    /// Measurements: `bench forwarder` (ours against rsyslog omkafka on one file).
    Bench {
        #[command(subcommand)]
        bench: crate::bench::BenchCommand,
    },
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Forward(args) => crate::forwarder::run(args, kafka, stop).await,
        Command::Bench { bench } => crate::bench::run(bench, kafka, stop).await,
    }
}
