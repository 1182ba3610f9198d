//! Ingestion's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `simulate` (the producers against a running ingest API), `demo` (everything in one
//! process, with a live summary), `batch` (the batch job over the store's files) and
//! `reconcile` (batch against speed).

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Command {
    /// Web, mobile and IoT producers sending NDJSON batches to a running ingest API.
    Simulate(crate::simulator::SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(crate::demo::DemoArgs),
    /// The batch layer's job: a day's files → per-minute counts and a daily report.
    Batch(crate::batch::BatchArgs),
    /// The batch layer's counts against the speed layer's, for every closed minute.
    Reconcile(crate::reconcile::ReconcileArgs),
    /// Performance figures (run with --release).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => crate::simulator::run(args, kafka, stop).await,
        Command::Demo(args) => crate::demo::run(args, kafka, stop).await,
        Command::Batch(args) => crate::batch::run(args, kafka).await,
        Command::Reconcile(args) => crate::reconcile::run(args, kafka, stop).await,
        Command::Bench(command) => crate::bench::run(command, kafka).await,
    }
}
