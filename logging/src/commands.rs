//! Logging's own subcommands, besides the scaffold's (`all`, `run`, one per service):
//! `forward`, our log forwarder (a command, not a service: it runs next to the applications
//! whose logs it reads, one per host, not in the pipeline's processes); `search`, the log sink's
//! index searched from the command line; `demo` (the pipeline, simulated applications with a
//! forwarder per host, and a live summary); `bench`, the benchmarks.

use std::path::PathBuf;

use clap::Subcommand;
use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

use crate::log_sink::{self, api, index::LogReader};

#[derive(Subcommand)]
pub enum Command {
    /// Our log forwarder: tails files (rotation-safe, positions persisted) and accepts syslog
    /// over TCP/UDP → application_logs, with back-pressure; flushes on shutdown.
    Forward(crate::forwarder::ForwardArgs),
    /// The pipeline, simulated applications (with an incident) shipped by our forwarder, and a
    /// live summary: error rates, p99 latencies, alerts.
    Demo(crate::demo::DemoArgs),
    /// Searches the log sink's index (opened read-only in its state directory; a running sink
    /// may keep writing it): the hits, newest first, then how many matched.
    Search(SearchArgs),
    /// Measurements: `bench forwarder` (ours against rsyslog omkafka on one file), `bench index`
    /// (parse + index lines/s, write → searchable).
    Bench {
        #[command(subcommand)]
        bench: crate::bench::BenchCommand,
    },
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// tantivy query syntax over message (the default field), host, service, level, format:
    /// `payment declined`, `service:checkout AND level:error`.
    pub query: String,
    /// RFC 3339, inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339, inclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// 1 to 1000.
    #[arg(long, default_value_t = api::DEFAULT_LIMIT)]
    pub limit: usize,
    /// The state directory of the process that runs the log sink (its index is
    /// `<state dir>/logging-log-sink`).
    #[arg(long, env = "STATE_DIR", default_value = "data/logging/state")]
    pub state_dir: PathBuf,
    /// Print each hit as JSON (one a line) instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    command: Command,
    kafka: &KafkaArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Forward(args) => crate::forwarder::run(args, kafka, stop).await,
        Command::Demo(args) => crate::demo::run(args, kafka, stop).await,
        Command::Search(args) => search(&args),
        Command::Bench { bench } => crate::bench::run(bench, kafka, stop).await,
    }
}

fn search(args: &SearchArgs) -> anyhow::Result<()> {
    let mut params = std::collections::HashMap::new();
    params.insert("q".to_owned(), args.query.clone());
    params.insert("limit".to_owned(), args.limit.to_string());
    for (name, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            params.insert(name.to_owned(), value.clone());
        }
    }
    let search = api::parse(&params).map_err(anyhow::Error::msg)?;
    let reader = LogReader::open(&log_sink::index_dir(&args.state_dir))?;
    let result = reader.search(&search)?;
    for hit in &result.hits {
        if args.json {
            println!("{}", serde_json::to_string(hit)?);
        } else {
            println!(
                "{} {} {} {:<9} {}",
                hit.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                hit.host,
                hit.service,
                hit.level,
                hit.message
            );
        }
    }
    eprintln!(
        "{} matching, {} shown (newest first)",
        result.total,
        result.hits.len()
    );
    Ok(())
}
