//! Ingestion's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `simulate` (the producers against a running ingest API) and `demo` (everything in one
//! process, with a live summary).

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Command {
    /// Web, mobile and IoT producers sending NDJSON batches to a running ingest API.
    Simulate(crate::simulator::SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(crate::demo::DemoArgs),
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => crate::simulator::run(args, kafka, stop).await,
        Command::Demo(args) => crate::demo::run(args, kafka, stop).await,
    }
}
