//! The service scaffold: what every case study's services run on.
//!
//! A **service** is one box of an architecture slide: a value with a name and a
//! [`Service::start`] that gets a [`Context`] (the resolved Kafka connection, this process's
//! advertised URL, its state and data directories, the shutdown token) plus the case study's
//! shared resources, and returns what runs: its HTTP routes and how to wait for it to stop
//! ([`Running`]). A case study lists its services once ([`CaseStudy`]); [`Process::start`] runs
//! any selection of them in one process behind one HTTP port with `/healthz`, `/readyz`,
//! `/metrics` and `/openapi.json`, and [`cli::run`] turns the list into the whole command line (a
//! subcommand per service, `all`, `run <service>…`, plus the case study's own commands).
//! Binaries, demos and tests start services through the same [`Process::start`].
//!
//! | file         | concept                                                             |
//! |--------------|---------------------------------------------------------------------|
//! | `mod.rs`     | [`Service`], [`Context`], [`Running`], [`CaseStudy`]                |
//! | [`process`]  | [`Process`]: start a selection of services, serve HTTP, stop in order |
//! | [`cli`]      | the command line every case study's `main` gets from its [`CaseStudy`] |

pub mod cli;
pub mod process;

use std::any::Any;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;

use crate::kafka::Kafka;
use crate::streams::{StreamsConfig, StreamsHandle};
use crate::topics::TopicSpec;

pub use process::{Process, ProcessOptions};

/// What a service gets when it starts.
#[derive(Clone)]
pub struct Context {
    pub kafka: Kafka,
    /// How other instances reach this process (interactive-query redirects): `ADVERTISED_URL`,
    /// default `http://<listen address>`.
    pub endpoint: String,
    /// Streams state: each application under `<state_dir>/<application id>/`.
    pub state_dir: PathBuf,
    /// The case study's files (databases, outboxes, analytics files).
    pub data_dir: PathBuf,
    /// Cancelled when the process stops: every service's loops watch it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Context {
    /// `config` with its state directory under this process's: `<state_dir>/<application id>`.
    pub fn state(&self, mut config: StreamsConfig) -> StreamsConfig {
        config.state_dir = self.state_dir.join(&config.application_id);
        config
    }

    /// [`Context::state`], and announced at this process's endpoint: an application whose
    /// stores answer interactive queries (other instances redirect to it).
    pub fn queryable(&self, config: StreamsConfig) -> StreamsConfig {
        StreamsConfig {
            endpoint: Some(self.endpoint.clone()),
            ..self.state(config)
        }
    }
}

type StopFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A started service: its routes, what to await when the process stops, and handles that
/// demos and tests look up by type ([`Process::get`]).
pub struct Running {
    pub(crate) router: Router,
    pub(crate) stop: Vec<StopFuture>,
    pub(crate) handles: Vec<Arc<dyn Any + Send + Sync>>,
    pub(crate) ready: Vec<(&'static str, crate::http::ReadyCheck)>,
}

impl Default for Running {
    fn default() -> Self {
        Running::new()
    }
}

impl Running {
    pub fn new() -> Running {
        Running {
            router: Router::new(),
            stop: Vec::new(),
            handles: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Routes this service serves (merged into the process's one router).
    pub fn routes(mut self, router: Router) -> Running {
        self.router = self.router.merge(router);
        self
    }

    /// Awaited when the process stops, after the shutdown token was cancelled and the HTTP
    /// server finished its requests: flush, commit, join threads.
    pub fn on_stop(
        mut self,
        stop: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> Running {
        self.stop.push(Box::pin(stop));
        self
    }

    /// A streams application: its stream thread is joined when the process stops, and its
    /// handle (stats, stores) can be looked up with `Process::get::<StreamsHandle>`.
    pub fn streams(self, handle: Arc<StreamsHandle>) -> Running {
        let joined = Arc::clone(&handle);
        self.handle(handle)
            .on_stop(async move { joined.join().await })
    }

    /// A condition `/readyz` also requires: `Err(reason)` makes it answer 503 naming `name`.
    pub fn ready_check(
        mut self,
        name: &'static str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Running {
        self.ready.push((name, Arc::new(check)));
        self
    }

    /// A value demos and tests may look up by type with [`Process::get`].
    pub fn handle<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Running {
        self.handles.push(value);
        self
    }
}

/// One box of a case study's architecture slide that runs as a service. `R` is what the case
/// study's services share (a catalog, a database URL…), built once per process. `start` need
/// not be `Send` (sqlx's futures, for one, are not provably so): a process starts its services
/// on the task that runs it.
#[async_trait::async_trait(?Send)]
pub trait Service<R>: Send + Sync + 'static {
    /// The CLI subcommand, kebab-case: `resuming-service`.
    fn name(&self) -> &'static str;
    /// One line for `--help`: what it reads and writes.
    fn about(&self) -> &'static str;
    /// Starts the service; returns once it runs (its routes are served right after).
    async fn start(&self, ctx: &Context, resources: &R) -> anyhow::Result<Running>;
    /// The streams applications this service runs (none by default): `casestudies broker`
    /// creates their internal topics, for services started in other processes.
    fn streams(&self, _kafka: &Kafka) -> Vec<StreamsConfig> {
        Vec::new()
    }
    /// Metrics of the process registry that are this service's although no label names it
    /// (a histogram one per process): the dashboard charts them in its panel. Series labelled
    /// with one of its [`Service::groups`] are its own already.
    fn metrics(&self) -> &'static [&'static str] {
        &[]
    }
    /// The consumer groups this service commits offsets in, with the topics each reads (full
    /// names): by default its streams applications' ids and inputs. The dashboard shows their
    /// lag.
    fn groups(&self, kafka: &Kafka) -> Vec<GroupSpec> {
        self.streams(kafka)
            .into_iter()
            .map(|config| GroupSpec {
                group: config.application_id,
                topics: config.inputs,
            })
            .collect()
    }
}

/// A consumer group a service commits offsets in, and the topics it reads (full names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub group: String,
    pub topics: Vec<String>,
}

/// A case study as the scaffold sees it: its topics (provisioned at start), its services in the
/// order they start, and its HTTP API description.
pub struct CaseStudy<R: 'static> {
    /// The binary's name: `movieflix`.
    pub name: &'static str,
    pub topics: &'static [TopicSpec],
    pub services: Vec<Box<dyn Service<R>>>,
    /// Routes every process of the case study serves, whatever its services (MovieFlix's
    /// catalog); `|_| Router::new()` for none.
    pub routes: fn(&R) -> Router,
    /// Served at `/openapi.json`.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

impl<R: 'static> CaseStudy<R> {
    /// The services called `names` (every one when `names` is empty), in start order.
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<&dyn Service<R>>> {
        if let Some(unknown) = names
            .iter()
            .find(|n| !self.services.iter().any(|s| s.name() == n.as_str()))
        {
            anyhow::bail!(
                "{}: no service {unknown:?} (one of {})",
                self.name,
                self.service_names().join(", ")
            );
        }
        Ok(self
            .services
            .iter()
            .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name()))
            .map(|s| s.as_ref())
            .collect())
    }

    /// The streams applications of every service ([`Service::streams`]).
    pub fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        self.services
            .iter()
            .flat_map(|s| s.streams(kafka))
            .collect()
    }

    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name()).collect()
    }
}
