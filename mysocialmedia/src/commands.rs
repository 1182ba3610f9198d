//! MySocialMedia's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `simulate` (users against a running MySocialMedia), `demo` (everything in one process, with a
//! live summary) and `bench` (the counting application under launch-day load).

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Command {
    /// Users posting, liking and commenting, against a running MySocialMedia over HTTP.
    Simulate(crate::simulator::SimulateArgs),
    /// Every service and the simulator in one process, with a live summary.
    Demo(crate::demo::DemoArgs),
    /// Launch-day load on the counting application (run with --release).
    Bench(crate::bench::BenchArgs),
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Simulate(args) => crate::simulator::run(args, kafka, stop).await,
        Command::Demo(args) => crate::demo::run(args, kafka, stop).await,
        Command::Bench(args) => crate::bench::run(args, kafka, stop).await,
    }
}
