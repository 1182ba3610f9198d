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
    /// `at_least_once` or `exactly_once_v2`.
    #[arg(long, default_value = "at_least_once")]
    guarantee: shared::streams::Guarantee,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    let kafka = Kafka::external(&args.bootstrap, &args.prefix, Vec::new());
    let shutdown = shared::shutdown::on_signal();
    let mut config = counter_config(&kafka, &args.state_dir);
    config.guarantee = args.guarantee;
    let handle = shared::streams::start(&kafka, config, tests::counter(&kafka), shutdown).await?;
    handle.join().await
}
