//! Logging's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `forward`, our log forwarder — a command, not a service: it runs next to the applications
//! whose logs it reads, one per host, not in the pipeline's processes — and `demo` (the
//! pipeline, simulated applications with a forwarder per host, and a live summary).

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Command {
    /// Our log forwarder: tails files (rotation-safe, positions persisted) and accepts syslog
    /// over TCP/UDP → application_logs, with back-pressure; flushes on shutdown.
    Forward(crate::forwarder::ForwardArgs),
    /// The pipeline, simulated applications (with an incident) shipped by our forwarder, and a
    /// live summary: error rates, p99 latencies, alerts.
    Demo(crate::demo::DemoArgs),
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Forward(args) => crate::forwarder::run(args, kafka, stop).await,
        Command::Demo(args) => crate::demo::run(args, kafka, stop).await,
    }
}
