//! `casestudies`: the umbrella CLI. See the crate docs of `casestudies` and the README.

use clap::{Parser, Subcommand};
use shared::{Kafka, KafkaArgs};

#[derive(Parser)]
#[command(
    name = "casestudies",
    version,
    about = "Six real-world Kafka architectures, in Rust"
)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every case study that is built, with its services and simulator, and a dashboard in the
    /// browser that shows them move (http://127.0.0.1:8080 by default).
    Up {
        #[command(flatten)]
        options: casestudies::up::UpOptions,
        /// The dashboard's port.
        #[arg(long, env = "DASHBOARD_PORT", default_value_t = 8080)]
        port: u16,
        /// The dashboard's address (0.0.0.0 to show it to a room).
        #[arg(long, env = "DASHBOARD_HOST", default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// Every topic of the six case studies: name, key, partitions, retention, cleanup, who
    /// produces and who consumes.
    Topics,
    /// Start the embedded broker alone, provision every topic (and every streams application's
    /// internal topics), print its address, run until Ctrl-C (services in other terminals then
    /// use KAFKA_BOOTSTRAP_SERVERS=<address>).
    Broker,
    /// Benchmarks (run with --release): `bench streams` (throughput) and `bench latency` (one
    /// stateful hop) measure the streams runtime.
    #[command(subcommand)]
    Bench(Bench),
    /// A consumer group's committed offset, log-end offset and lag per partition.
    Lag {
        /// The consumer group (application id).
        #[arg(long)]
        group: String,
        /// Only this topic (full name); default: every topic with the prefix the group committed.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Dead letters: `dlq replay --topic <t>.dlq` re-produces them to their source topic.
    #[command(subcommand)]
    Dlq(Dlq),
}

#[derive(Subcommand)]
enum Dlq {
    /// Re-produce dead letters (original key, value, headers) to the topic named in their
    /// `source.topic` header; progress is committed, so a second replay does not repeat them.
    Replay(casestudies::dlq::ReplayArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// Raw consume rate vs count-per-key with RocksDB + changelog, and restore rate.
    Streams(casestudies::bench::StreamsBench),
    /// One stateful hop at a steady rate: input produced -> count-per-key -> output polled;
    /// p50/p99/max.
    Latency(casestudies::bench::LatencyBench),
    /// What `up`'s dashboard costs: the process's CPU with one page open vs none, alternated,
    /// and the bytes per second sent to the page.
    Dashboard(casestudies::bench::DashboardBench),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init();
    // One line of reasons, not a debug dump with a backtrace: the case studies' CLIs do the same.
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            options,
            port,
            host,
        } => {
            let kafka = Kafka::connect(&cli.kafka)?;
            let address = std::net::SocketAddr::new(host, port);
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "cannot listen on {address}: {err} (try --port 0 for any free port)"
                    )
                })?;
            let shutdown = shared::shutdown::on_signal();
            casestudies::up::run(&kafka, &options, listener, shutdown).await?;
        }
        Command::Topics => print!("{}", casestudies::topics_table(&cli.kafka.topic_prefix)),
        Command::Broker => {
            if cli.kafka.bootstrap_servers.is_some() {
                tracing::warn!(
                    "`broker` always starts the embedded broker; KAFKA_BOOTSTRAP_SERVERS is ignored"
                );
            }
            let args = KafkaArgs {
                bootstrap_servers: None,
                ..cli.kafka
            };
            let kafka = Kafka::connect(&args)?;
            let provisioned = casestudies::provision_broker(&kafka).await?;
            let address = kafka.bootstrap_servers();
            println!("embedded Kafka broker (librdkafka mock cluster) is running");
            println!("bootstrap servers: {address}");
            println!(
                "topics provisioned: {} of the case studies, {} internal topics of their streams applications",
                provisioned.topics, provisioned.internal
            );
            println!();
            println!("  inspect:     kcat -b {address} -L");
            println!("  use it:      export KAFKA_BOOTSTRAP_SERVERS={address}");
            println!("  stop:        Ctrl-C");
            shared::shutdown::on_signal().cancelled().await;
        }
        Command::Bench(Bench::Streams(bench)) => {
            let kafka = Kafka::connect(&cli.kafka)?;
            casestudies::bench::streams(&kafka, &bench).await?;
        }
        Command::Bench(Bench::Dashboard(bench)) => {
            let kafka = Kafka::connect(&cli.kafka)?;
            casestudies::bench::dashboard(&kafka, &bench).await?;
        }
        Command::Bench(Bench::Latency(bench)) => {
            let kafka = Kafka::connect(&cli.kafka)?;
            casestudies::bench::latency(&kafka, &bench).await?;
        }
        Command::Lag { group, topic } => {
            let kafka = Kafka::connect(&cli.kafka)?;
            if kafka.is_embedded() {
                anyhow::bail!(
                    "`lag` reads an existing cluster: set KAFKA_BOOTSTRAP_SERVERS (e.g. the address `casestudies broker` prints)"
                );
            }
            let lag = shared::lag::group_lag(&kafka, &group, topic.as_deref()).await?;
            print!("{}", casestudies::lag_table(&lag));
        }
        Command::Dlq(Dlq::Replay(args)) => {
            let kafka = Kafka::connect(&cli.kafka)?;
            if kafka.is_embedded() {
                anyhow::bail!(
                    "`dlq replay` reads an existing cluster: set KAFKA_BOOTSTRAP_SERVERS (e.g. the address `casestudies broker` prints)"
                );
            }
            print!("{}", casestudies::dlq::replay(&kafka, &args).await?);
        }
    }
    Ok(())
}
