//! The object-store sink in its own process, configured by a Connect-style `.properties` file,
//! for the tests that crash it (`ANALYTICS_SINK_CRASH`) or SIGKILL it.

use std::path::PathBuf;

use clap::Parser;
use shared::Kafka;
use shared::analytics::config::{KNOWN_PREFIXES, KNOWN_PROPERTIES};
use shared::analytics::{self, SinkConfig};
use shared::properties::Properties;
use tests::Ping;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    let kafka = Kafka::external(&args.bootstrap, &args.prefix, Vec::new());
    let properties = Properties::read(&args.config, KNOWN_PROPERTIES, KNOWN_PREFIXES)?;
    let config = SinkConfig::from_properties(&properties, &kafka)?;
    let shutdown = shared::shutdown::on_signal();
    let sink = analytics::start::<Ping>(&kafka, config, |_| Ok(()), shutdown).await?;
    sink.join().await
}
