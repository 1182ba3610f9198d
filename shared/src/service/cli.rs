//! The command line a case study gets from its [`CaseStudy`]: its `main` is
//! `shared::service::cli::main::<MyCaseStudy>().await`.
//!
//! ```text
//! <case study> all                       every service in one process (one HTTP port)
//! <case study> run <service>…            any selection of them
//! <case study> <service>                 one (to scale it out alone)
//! <case study> <own command>             the case study's own: simulate, demo, bench…
//! ```
//!
//! Every serving subcommand takes [`ServeArgs`] (listen address, advertised URL, data and state
//! directories) plus the case study's own options ([`CaseStudyCli::Options`]); Kafka comes from
//! [`KafkaArgs`]. Errors are printed as one chain of reasons, not a backtrace, with exit code 1.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::PossibleValuesParser;
use clap::{ArgMatches, Args, FromArgMatches, Subcommand};
use tokio_util::sync::CancellationToken;

use super::{CaseStudy, Process, ProcessOptions};
use crate::config::KafkaArgs;
use crate::kafka::Kafka;

/// What a case study adds to the scaffold's command line.
pub trait CaseStudyCli: Sized + 'static {
    /// What its services share, built once per process from [`Self::Options`].
    type Resources: Send + Sync + 'static;
    /// Options of every serving subcommand besides [`ServeArgs`] (e.g. a connector's file).
    type Options: Args + Clone + Send + Sync + 'static;
    /// Its own subcommands (simulate, demo, bench…).
    type Command: Subcommand + Send + 'static;
    /// One line for `--help`.
    const ABOUT: &'static str;

    fn case_study() -> CaseStudy<Self::Resources>;

    /// Builds the shared resources for a process (after the directories are resolved).
    fn resources(
        kafka: &Kafka,
        dirs: &Dirs,
        options: &Self::Options,
    ) -> impl Future<Output = anyhow::Result<Self::Resources>>;

    /// Runs one of the case study's own subcommands.
    fn command(
        command: Self::Command,
        kafka: &KafkaArgs,
        stop: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>>;
}

/// [`CaseStudyCli::Options`] of a case study with no options of its own.
#[derive(Debug, Clone, Default, Args)]
pub struct NoOptions {}

/// [`CaseStudyCli::Command`] of a case study with no commands of its own (`match command {}`).
#[derive(Debug, Subcommand)]
pub enum NoCommand {}

/// Where a serving process listens and keeps its files.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTP address of this process.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How other instances reach this one (interactive-query redirects); default http://<listen>.
    #[arg(long, env = "ADVERTISED_URL")]
    pub advertised_url: Option<String>,
    /// Where the case study keeps its files. Default: ./data/<case study>, or a new run-stamped
    /// directory on the embedded broker (its topics start empty every run, so files and state
    /// of an earlier run would not match them).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Streams state (RocksDB). Default: <data dir>/state.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// Listen on a free loopback port, directories under `dir` (tests).
    pub fn for_tests(dir: &std::path::Path) -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:0".parse().expect("an address"),
            advertised_url: None,
            data_dir: Some(dir.to_path_buf()),
            state_dir: Some(dir.join("state")),
        }
    }
}

/// The directories a process resolved from [`ServeArgs`].
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub state: PathBuf,
    /// `--data-dir` (or `DATA_DIR`) named it.
    pub data_given: bool,
}

impl Dirs {
    pub fn resolve(case_study: &str, args: &ServeArgs, embedded: bool) -> anyhow::Result<Dirs> {
        let data = match (&args.data_dir, embedded) {
            (Some(dir), _) => dir.clone(),
            (None, false) => PathBuf::from("data").join(case_study),
            (None, true) => {
                let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
                PathBuf::from(format!("data/{case_study}-{stamp}"))
            }
        };
        std::fs::create_dir_all(&data)
            .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", data.display()))?;
        let state = args.state_dir.clone().unwrap_or_else(|| data.join("state"));
        Ok(Dirs {
            data,
            state,
            data_given: args.data_dir.is_some(),
        })
    }
}

/// Resolves the directories and resources and starts `names` (every service when empty): what
/// serving subcommands, demos and tests all call.
pub async fn start<C: CaseStudyCli>(
    kafka: &Kafka,
    names: &[String],
    serve: &ServeArgs,
    options: &C::Options,
) -> anyhow::Result<(Process, Dirs)> {
    let case_study = C::case_study();
    let services = case_study.select(names)?;
    let dirs = Dirs::resolve(case_study.name, serve, kafka.is_embedded())?;
    let resources = Arc::new(C::resources(kafka, &dirs, options).await?);
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot listen on {}: {err} (try --listen 127.0.0.1:0)",
                serve.listen
            )
        })?;
    let process = Process::start(
        kafka,
        &case_study,
        &services,
        resources,
        ProcessOptions {
            listener,
            advertised_url: serve.advertised_url.clone(),
            state_dir: dirs.state.clone(),
            data_dir: dirs.data.clone(),
        },
    )
    .await?;
    Ok((process, dirs))
}

/// The whole `main` of a case study's binary.
pub async fn main<C: CaseStudyCli>() -> ExitCode {
    crate::telemetry::init();
    match run::<C>(std::env::args_os()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` and runs the subcommand until it ends or SIGINT/SIGTERM.
pub async fn run<C: CaseStudyCli>(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> anyhow::Result<()> {
    let matches = command::<C>().get_matches_from(args);
    let kafka_args = KafkaArgs::from_arg_matches(&matches)?;
    let stop = crate::shutdown::on_signal();
    let names = C::case_study().service_names();
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let selection: Vec<String> = match name {
        "all" => Vec::new(),
        "run" => sub
            .get_many::<String>("services")
            .expect("required")
            .cloned()
            .collect(),
        name if names.contains(&name) => vec![name.to_owned()],
        _ => return C::command(C::Command::from_arg_matches(&matches)?, &kafka_args, stop).await,
    };
    serve::<C>(&kafka_args, &selection, sub, stop).await
}

async fn serve<C: CaseStudyCli>(
    kafka_args: &KafkaArgs,
    selection: &[String],
    matches: &ArgMatches,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let serve = ServeArgs::from_arg_matches(matches)?;
    let options = C::Options::from_arg_matches(matches)?;
    let kafka = Kafka::connect(kafka_args)?;
    let case_study = C::case_study().name;
    if kafka.is_embedded() && selection.len() == 1 {
        tracing::warn!(
            "no KAFKA_BOOTSTRAP_SERVERS: this service runs on its own private embedded broker; \
             start `cargo run --release -- broker` and point every service at it to run them apart"
        );
    }
    let (process, dirs) = start::<C>(&kafka, selection, &serve, &options).await?;
    let services = match process.services.join(", ") {
        none if none.is_empty() => "no services yet".to_owned(),
        services => services,
    };
    println!(
        "{case_study}: {services} on {} (broker {}, data {}, state {})",
        process.url(),
        kafka.bootstrap_servers(),
        dirs.data.display(),
        dirs.state.display()
    );
    stop.cancelled().await;
    process.stop().await
}

/// The clap command: the scaffold's subcommands, then the case study's own. (Each `about` is set
/// after the flattened arguments, whose doc comments would otherwise become it.)
pub fn command<C: CaseStudyCli>() -> clap::Command {
    let case_study = C::case_study();
    let serving = |name: &'static str, about: &'static str| {
        C::Options::augment_args(ServeArgs::augment_args(clap::Command::new(name))).about(about)
    };
    let mut command = KafkaArgs::augment_args(clap::Command::new(case_study.name))
        .about(C::ABOUT)
        .subcommand_required(true)
        .arg_required_else_help(true);
    command = command.subcommand(serving(
        "all",
        "Every service in one process (one HTTP port).",
    ));
    command = command.subcommand(
        serving("run", "The services named, in one process (one HTTP port).").arg(
            clap::Arg::new("services")
                .required(true)
                .num_args(1..)
                .value_parser(PossibleValuesParser::new(case_study.service_names())),
        ),
    );
    for service in &case_study.services {
        command = command.subcommand(serving(service.name(), service.about()));
    }
    // Last: a derived `Command`'s doc comment would otherwise become the binary's `about`.
    C::Command::augment_subcommands(command).about(C::ABOUT)
}
