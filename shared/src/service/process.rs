//! [`Process`]: a selection of a case study's services running in one process behind one HTTP
//! port — what `<case study> all`, `<case study> <service>`, the demos and the tests all run.

use std::any::Any;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::{CaseStudy, Context, Running, Service, StopFuture};
use crate::http::{Json, Readiness};
use crate::kafka::Kafka;

/// Where a process listens and keeps its files.
pub struct ProcessOptions {
    pub listener: tokio::net::TcpListener,
    /// How other instances reach this one; default `http://<listen address>`.
    pub advertised_url: Option<String>,
    /// Streams state: `<state_dir>/<application id>/`.
    pub state_dir: PathBuf,
    /// The case study's files.
    pub data_dir: PathBuf,
}

/// Running services; [`Process::stop`] stops them in order.
pub struct Process {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    /// The names of the services running here, in start order.
    pub services: Vec<&'static str>,
    /// In a mutex only so that a `&Process` can cross threads (the futures are `Send`, not
    /// `Sync`); [`Process::stop`] takes them.
    stops: std::sync::Mutex<Vec<StopFuture>>,
    handles: Vec<Arc<dyn Any + Send + Sync>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Process {
    /// Provisions the case study's topics (idempotent), starts `services` in order with
    /// `resources`, and serves their routes with `/healthz`, `/readyz`, `/metrics` and
    /// `/openapi.json`. A service that fails to start stops the ones started before it.
    pub async fn start<R: Send + Sync + 'static>(
        kafka: &Kafka,
        case_study: &CaseStudy<R>,
        services: &[&dyn Service<R>],
        resources: Arc<R>,
        options: ProcessOptions,
    ) -> anyhow::Result<Process> {
        crate::provision(kafka, case_study.topics).await?;
        let shutdown = CancellationToken::new();
        let address = options.listener.local_addr()?;
        let ctx = Context {
            kafka: kafka.clone(),
            endpoint: options
                .advertised_url
                .clone()
                .unwrap_or_else(|| format!("http://{address}")),
            state_dir: options.state_dir,
            data_dir: options.data_dir,
            shutdown: shutdown.clone(),
        };
        let openapi = (case_study.openapi)();
        let readiness = Readiness::new(kafka)?;
        let mut router = (case_study.routes)(&resources)
            .route("/openapi.json", get(move || async move { Json(openapi) }))
            .merge(crate::http::ops_router(readiness.clone()));
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for service in services {
            let running: Running = match service.start(&ctx, &resources).await {
                Ok(running) => running,
                Err(err) => {
                    shutdown.cancel();
                    for stop in stops {
                        let _: anyhow::Result<()> = stop.await;
                    }
                    return Err(err.context(format!("cannot start {}", service.name())));
                }
            };
            router = router.merge(running.router);
            stops.extend(running.stop);
            handles.extend(running.handles);
            for (name, check) in running.ready {
                readiness.add(name, check);
            }
        }
        let server = tokio::spawn(crate::http::serve(
            options.listener,
            crate::http::finish(router),
            shutdown.clone(),
        ));
        let names: Vec<&'static str> = services.iter().map(|s| s.name()).collect();
        tracing::info!(%address, services = ?names, "{} running", case_study.name);
        Ok(Process {
            address,
            shutdown,
            services: names,
            stops: std::sync::Mutex::new(stops),
            handles,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The first handle of type `T` a service registered ([`Running::handle`]), e.g. a
    /// `StreamsHandle` or a service's stats.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.handles
            .iter()
            .find_map(|h| Arc::clone(h).downcast::<T>().ok())
    }

    /// Every handle of type `T`, in start order.
    pub fn all<T: Any + Send + Sync>(&self) -> Vec<Arc<T>> {
        self.handles
            .iter()
            .filter_map(|h| Arc::clone(h).downcast::<T>().ok())
            .collect()
    }

    /// Stops accepting requests (requests in flight finish), then runs every service's stop in
    /// start order: each flushes what it accepted and commits what it processed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        drop(self.handles);
        let mut result = Ok(());
        let stops = self.stops.into_inner().expect("stops lock");
        for stop in stops {
            if let Err(err) = stop.await {
                tracing::error!(err = format!("{err:#}"), "a service failed while stopping");
                if result.is_ok() {
                    result = Err(err);
                }
            }
        }
        result
    }
}
