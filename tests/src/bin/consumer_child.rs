//! A consumer process for the delivery-semantics tests: consumes `Ping`s with the shared consumer
//! loop, appends each `seq` to `--out` after a delay (the "work"), and can be SIGKILLed at any
//! moment by the test.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use shared::{ConsumerLoop, ConsumerOptions, DeliveryMode, HandlerError, Kafka, Record};
use tests::Ping;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, value_enum)]
    mode: DeliveryMode,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    let kafka = Kafka::external(&args.bootstrap, "", Vec::new());
    let mut options = ConsumerOptions::new(&args.group, [&args.topic])
        .mode(args.mode)
        .batch_size(args.batch_size)
        // A killed member must leave the group quickly so the test's replacement gets its
        // partitions (6 s is the smallest session timeout Kafka brokers accept by default).
        .property("session.timeout.ms", "6000")
        .property("heartbeat.interval.ms", "500");
    // Wait for a full batch, so a kill lands in the middle of one.
    options.batch_linger = Duration::from_millis(500);
    let out = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)?,
    );
    let delay = Duration::from_millis(args.delay_ms);
    let handler = move |record: Record<Ping>| {
        let line = format!("{}\n", record.value.seq);
        let result = out.lock().expect("out lock").write_all(line.as_bytes());
        async move {
            tokio::time::sleep(delay).await;
            result.map_err(|e| HandlerError::Transient(e.into()))
        }
    };
    ConsumerLoop::new(&kafka, options)?
        .run(handler, shared::shutdown::on_signal())
        .await
}
