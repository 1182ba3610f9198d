//! A count-per-key streams application in its own process, for the kill -9 tests.

use std::path::PathBuf;

use clap::Parser;
use shared::Kafka;
use tests::counter_config;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    let kafka = Kafka::external(&args.bootstrap, &args.prefix, Vec::new());
    let shutdown = shared::shutdown::on_signal();
    let handle = shared::streams::start(
        &kafka,
        counter_config(&kafka, &args.state_dir),
        tests::counter(&kafka),
        shutdown,
    )
    .await?;
    handle.join().await
}
