//! `casestudies up`: every case study that is built, running with its simulator, and a
//! dashboard that shows the architectures move — on the embedded broker by default, on any
//! cluster with `KAFKA_BOOTSTRAP_SERVERS` (and `TOPIC_PREFIX`).
//!
//! | file            | concept                                                               |
//! |-----------------|-----------------------------------------------------------------------|
//! | `mod.rs`        | [`run`]: start the case studies, serve the dashboard, stop in order     |
//! | `case_study.rs` | one case study from its `LiveCaseStudy`: processes, spare, simulator, graph |
//! | `tail.rs`       | the one reader of every topic: counts, last records, offsets' times     |
//! | `sampler.rs`    | once a second: rates, lags, health, views → the SSE snapshot          |
//! | `series.rs`     | services' metrics over the last five minutes, from the registry       |
//! | `routes.rs`     | the page and the JSON API (`API.md`)                                  |
//! | `assets/`       | the page: HTML, one hand-written script, one stylesheet               |
//!
//! `main` and the tests call the same [`run`] with a listener and a shutdown token.

pub mod case_study;
pub mod routes;
pub mod sampler;
pub mod series;
pub mod tail;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use shared::Kafka;

use case_study::{Control, Started};

/// What to run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpOptions {
    /// Only these case studies (comma-separated), e.g. `--only movieflix,mybank`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Simulators' knobs: `--rate movieflix=100,mybank=20` sets a case study's knob (viewers,
    /// transactions/s); `--rate 2` doubles every default.
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<String>,
    /// Where the case studies keep their files. Default: a new run-stamped directory under
    /// `data/` (the embedded broker's topics start empty every run).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Starts a case study: `up::case_study::start::<C>` for each entry of [`crate::LIVE`].
pub type StartFn = for<'a> fn(
    &'a Kafka,
    &'a std::path::Path,
    Option<f64>,
) -> futures::future::LocalBoxFuture<'a, anyhow::Result<Started>>;

/// A case study `up` can run ([`crate::LIVE`]).
pub struct LiveEntry {
    pub name: &'static str,
    pub start: StartFn,
    /// Its knob's default.
    pub knob: fn() -> f64,
}

impl UpOptions {
    /// The case studies to run, each with its knob's value if one was asked for.
    pub fn select(&self) -> anyhow::Result<Vec<(&'static str, StartFn, Option<f64>)>> {
        let known: Vec<&str> = crate::LIVE.iter().map(|entry| entry.name).collect();
        for name in &self.only {
            if !known.contains(&name.as_str()) {
                anyhow::bail!(
                    "--only: no case study {name:?} is built (one of {})",
                    known.join(", ")
                );
            }
        }
        let mut factor = None;
        let mut rates = Vec::new();
        for rate in &self.rate {
            match rate.split_once('=') {
                Some((name, value)) => {
                    if !known.contains(&name) {
                        anyhow::bail!(
                            "--rate: no case study {name:?} (one of {})",
                            known.join(", ")
                        );
                    }
                    let value: f64 = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--rate {rate}: {value:?} is not a number"))?;
                    rates.push((name.to_owned(), value));
                }
                None => {
                    let value: f64 = rate.parse().map_err(|_| {
                        anyhow::anyhow!("--rate {rate}: a factor (2) or <case study>=<value>")
                    })?;
                    if !(value.is_finite() && value >= 0.0) {
                        anyhow::bail!("--rate {rate}: a factor must be 0 or more");
                    }
                    factor = Some(value);
                }
            }
        }
        Ok(crate::LIVE
            .iter()
            .filter(|entry| self.only.is_empty() || self.only.iter().any(|o| o == entry.name))
            .map(|entry| {
                let value = rates
                    .iter()
                    .find(|(n, _)| n == entry.name)
                    .map(|(_, v)| *v)
                    .or_else(|| factor.map(|f| f * (entry.knob)()));
                (entry.name, entry.start, value)
            })
            .collect())
    }
}

/// Starts every selected case study, serves the dashboard on `listener` until `shutdown`,
/// then stops everything: the dashboard, the simulators, the services (they commit what they
/// processed and close their files).
pub async fn run(
    kafka: &Kafka,
    options: &UpOptions,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let selected = options.select()?;
    let dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(format!(
            "data/up-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut started: Vec<Started> = Vec::new();
    for (name, start, knob) in selected {
        tracing::info!(case_study = name, "starting");
        let result = tokio::select! {
            result = start(kafka, &dir, knob) => result,
            () = shutdown.cancelled() => Err(anyhow::anyhow!("stopped while starting")),
        };
        match result {
            Ok(case_study) => started.push(case_study),
            Err(err) => {
                stop_all(started).await;
                return Err(err.context(format!("cannot start {name}")));
            }
        }
    }
    let lives: Vec<_> = started.iter().map(|s| Arc::clone(&s.live)).collect();
    let mut topics = Vec::new();
    for live in &lives {
        for (full, spec) in &live.topics {
            topics.push(full.clone());
            if let Some(dlq) = spec.dlq_name(kafka.prefix()) {
                topics.push(dlq);
            }
        }
    }
    let stop = CancellationToken::new();
    let dashboard = async {
        let (tail, tail_thread) = tail::start(kafka, &topics, stop.clone())?;
        let (sampled, sampler) = sampler::start(kafka, lives.clone(), tail.clone(), stop.clone())?;
        let (control, requests) = tokio::sync::mpsc::channel(8);
        let dashboard = Arc::new(routes::Dashboard {
            lives,
            tail,
            sampled,
            control,
            producer: kafka.producer_config().create()?,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            stop: stop.clone(),
        });
        let address = listener.local_addr()?;
        let server = tokio::spawn(shared::http::serve(
            listener,
            routes::router(dashboard),
            stop.clone(),
        ));
        anyhow::Ok((tail_thread, sampler, server, requests, address))
    }
    .await;
    let (tail_thread, sampler, server, mut requests, address) = match dashboard {
        Ok(parts) => parts,
        Err(err) => {
            stop.cancel();
            stop_all(started).await;
            return Err(err.context("cannot start the dashboard"));
        }
    };
    let broker = kafka.bootstrap_servers();
    println!();
    println!("  dashboard   http://{address}");
    for s in &started {
        println!("  {:<11} {}", s.live.name(), s.process.url());
    }
    println!(
        "  broker      {broker}{}  (inspect: kcat -b {broker} -L)",
        if kafka.is_embedded() {
            " (embedded)"
        } else {
            ""
        }
    );
    println!("  files       {}", dir.display());
    println!("  stop        Ctrl-C");
    println!();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => control(&mut started, request).await,
                None => break,
            },
        }
    }
    tracing::info!("stopping: the dashboard, then the simulators, then the services");
    stop.cancel();
    let _ = server.await;
    let _ = sampler.await;
    let _ = tokio::task::spawn_blocking(move || tail_thread.join()).await;
    stop_all(started).await;
    Ok(())
}

async fn control(started: &mut [Started], request: Control) {
    let (name, stop, reply) = match request {
        Control::StopSpare(name, reply) => (name, true, reply),
        Control::StartSpare(name, reply) => (name, false, reply),
    };
    let Some(case_study) = started.iter_mut().find(|s| s.live.name() == name) else {
        let _ = reply.send(Err(case_study::SpareError::None(name)));
        return;
    };
    let result = if stop {
        case_study.stop_spare().await
    } else {
        case_study.start_spare().await
    };
    let _ = reply.send(result);
}

async fn stop_all(started: Vec<Started>) {
    for case_study in started {
        let name = case_study.live.name();
        if let Err(err) = case_study.stop().await {
            tracing::error!(
                case_study = name,
                err = format!("{err:#}"),
                "failed while stopping"
            );
        }
    }
}
