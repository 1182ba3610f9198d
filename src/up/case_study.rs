//! One case study as `up` runs it: every service in one process, a second instance of its
//! stateful service in another, its simulator — started from its [`LiveCaseStudy`]. What the
//! dashboard's handlers read ([`Live`]: description, knob, spare's state) is shared; what runs
//! ([`Started`]: the processes) stays on the task that started them, because starting services
//! need not be `Send` (the scaffold's rule): the handlers ask that task to stop or start the
//! spare ([`Control`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use clap::{Args, FromArgMatches};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QuerySpec};
use shared::service::Process;
use shared::service::cli::{self, ServeArgs};
use shared::streams::StreamsHandle;
use shared::topics::TopicSpec;

/// A node of a case study's graph: a service or a topic.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub id: String,
    /// `service`, `topic` or `external` (a name on the topics' slide that runs nowhere here).
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub service: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub key: &'static str,
    pub dlq: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KnobInfo {
    pub label: &'static str,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SpareInfo {
    pub service: &'static str,
}

/// What the page is told about a case study (`GET /api/case-studies/{cs}`).
#[derive(Clone, Debug, Serialize)]
pub struct Description {
    pub name: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    pub api: String,
    pub graph: Graph,
    pub topics: Vec<TopicInfo>,
    pub services: Vec<&'static str>,
    /// Each stateful service's state stores.
    pub stores: BTreeMap<&'static str, Vec<String>>,
    pub queries: Vec<QuerySpec>,
    pub knob: KnobInfo,
    pub spare: Option<SpareInfo>,
}

/// A consumer group of one of the case study's services.
#[derive(Clone, Debug)]
pub struct ServiceGroup {
    pub service: &'static str,
    pub group: String,
    /// Full topic names.
    pub topics: Vec<String>,
}

/// The second instance, as the handlers see it.
#[derive(Default)]
pub struct SpareState {
    pub running: bool,
    /// Its streams application, while it runs (its partitions).
    pub streams: Option<Arc<StreamsHandle>>,
}

/// A running case study, as the dashboard's handlers and sampler see it.
pub struct Live {
    pub description: Description,
    pub knob: Knob,
    pub groups: Vec<ServiceGroup>,
    /// Full name of every topic (not the dead-letter ones).
    pub topics: Vec<(String, &'static TopicSpec)>,
    /// The first instance's streams application of the spare service (its partitions).
    pub main_streams: Option<Arc<StreamsHandle>>,
    pub spare: Mutex<SpareState>,
    pub view: fn(String, reqwest::Client) -> BoxFuture<'static, Vec<Panel>>,
    /// Unlabelled registry metrics that belong to a service ([`shared::service::Service::metrics`]).
    pub metrics: Vec<(&'static str, &'static [&'static str])>,
    /// Which service produces to each topic (short name → services).
    pub producers: Vec<(String, Vec<&'static str>)>,
}

impl Live {
    pub fn name(&self) -> &'static str {
        self.description.name
    }

    /// `movieflix.show_position` → its full name, and the spec (dead-letter topics included:
    /// `… .dlq`).
    pub fn topic(&self, short: &str) -> Option<String> {
        self.topics.iter().find_map(|(full, spec)| {
            let name = spec.full_name("");
            if name == short {
                Some(full.clone())
            } else if spec.dlq_name("").as_deref() == Some(short) {
                spec.dlq_name(&full[..full.len() - name.len()])
            } else {
                None
            }
        })
    }
}

fn view<C: LiveCaseStudy>(api: String, http: reqwest::Client) -> BoxFuture<'static, Vec<Panel>> {
    Box::pin(C::view(api, http))
}

/// Starts the spare again (on the task that owns the processes).
type SpareStart =
    Box<dyn Fn() -> futures::future::LocalBoxFuture<'static, anyhow::Result<Process>>>;
/// The spare service's streams application in a process.
type StreamsOf = Box<dyn Fn(&Process) -> Option<Arc<StreamsHandle>>>;

/// What the task that started a case study keeps to stop it.
pub struct Started {
    pub live: Arc<Live>,
    pub process: Process,
    spare: Option<Process>,
    simulator_stop: CancellationToken,
    simulator: tokio::task::JoinHandle<anyhow::Result<()>>,
    start_spare: SpareStart,
    streams_of: StreamsOf,
}

/// A request from a handler to the task that owns the processes.
pub enum Control {
    StopSpare(String, tokio::sync::oneshot::Sender<Result<(), SpareError>>),
    StartSpare(String, tokio::sync::oneshot::Sender<Result<(), SpareError>>),
}

#[derive(Debug, thiserror::Error)]
pub enum SpareError {
    #[error("{0} has no second instance")]
    None(String),
    #[error("the second instance of {0} is already {1}")]
    Already(&'static str, &'static str),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Normalises a name on the topics' slide ("resuming service", "big-transaction detector
/// (streams)", "like/comment service") to a service name ("resuming-service",
/// "like-comment-service").
fn service_of(label: &str, services: &[&'static str]) -> Option<&'static str> {
    let plain = label.split(" (").next().unwrap_or(label).trim();
    let kebab = plain.to_lowercase().replace([' ', '/'], "-");
    services.iter().copied().find(|s| *s == kebab)
}

/// The graph of `topics` and the services that produce and consume them.
pub fn graph(topics: &[TopicSpec], services: &[&'static str]) -> Graph {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut seen = BTreeSet::new();
    let mut node_of = |label: &str, nodes: &mut Vec<Node>| {
        let plain = label.split(" (").next().unwrap_or(label).trim().to_owned();
        let service = service_of(label, services);
        let id = format!("service:{}", service.unwrap_or(&plain));
        if seen.insert(id.clone()) {
            nodes.push(Node {
                id: id.clone(),
                kind: if service.is_some() {
                    "service"
                } else {
                    "external"
                },
                label: service.map_or(plain, |s| s.replace('-', " ")),
                topic: None,
                service,
            });
        }
        id
    };
    for spec in topics {
        let name = spec.full_name("");
        let topic_id = format!("topic:{name}");
        for producer in spec.producers {
            let from = node_of(producer, &mut nodes);
            edges.push(Edge {
                from,
                to: topic_id.clone(),
            });
        }
        nodes.push(Node {
            id: topic_id.clone(),
            kind: "topic",
            label: name.clone(),
            topic: Some(name),
            service: None,
        });
        for consumer in spec.consumers {
            let to = node_of(consumer, &mut nodes);
            edges.push(Edge {
                from: topic_id.clone(),
                to,
            });
        }
    }
    Graph { nodes, edges }
}

/// The case study's options at their defaults (and environment), as its CLI would parse them.
fn default_options<C: LiveCaseStudy>() -> anyhow::Result<C::Options> {
    let matches =
        C::Options::augment_args(clap::Command::new("up")).try_get_matches_from(["up"])?;
    Ok(C::Options::from_arg_matches(&matches)?)
}

/// Starts every service of `C` under `dir`, its spare, and its simulator.
pub async fn start<C: LiveCaseStudy>(
    kafka: &Kafka,
    dir: &Path,
    knob: Option<f64>,
) -> anyhow::Result<Started> {
    let case_study = C::case_study();
    let options = default_options::<C>()?;
    let serve = ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        advertised_url: None,
        data_dir: Some(dir.join(case_study.name)),
        state_dir: None,
    };
    let (process, dirs) = cli::start::<C>(kafka, &[], &serve, &options).await?;
    let spare_serve = ServeArgs {
        state_dir: Some(dirs.data.join("state-spare")),
        ..serve
    };
    let start_spare: Box<
        dyn Fn() -> futures::future::LocalBoxFuture<'static, anyhow::Result<Process>>,
    > = match C::SPARE {
        Some(spare) => {
            let (kafka, options) = (kafka.clone(), options.clone());
            Box::new(move || {
                let (kafka, options, serve) = (kafka.clone(), options.clone(), spare_serve.clone());
                Box::pin(async move {
                    let (process, _) =
                        cli::start::<C>(&kafka, &[spare.to_owned()], &serve, &options).await?;
                    Ok(process)
                })
            })
        }
        None => Box::new(|| Box::pin(async { anyhow::bail!("no second instance") })),
    };
    let spare = match C::SPARE {
        Some(_) => Some(start_spare().await?),
        None => None,
    };
    let knob_value = C::knob();
    if let Some(value) = knob {
        knob_value
            .set(value)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", case_study.name))?;
    }
    let simulator_stop = CancellationToken::new();
    let simulator = C::simulate(
        kafka,
        &process,
        &dirs,
        &options,
        knob_value.clone(),
        simulator_stop.clone(),
    )
    .await?;
    let services = case_study.service_names();
    let mut groups = Vec::new();
    for service in &case_study.services {
        for spec in service.groups(kafka) {
            groups.push(ServiceGroup {
                service: service.name(),
                group: spec.group,
                topics: spec.topics,
            });
        }
    }
    let producers = case_study
        .topics
        .iter()
        .map(|t| {
            (
                t.full_name(""),
                t.producers
                    .iter()
                    .filter_map(|p| service_of(p, &services))
                    .collect(),
            )
        })
        .collect();
    // The spare service's streams application, in each process.
    let spare_app: Option<String> = C::SPARE.and_then(|name| {
        let service = case_study.services.iter().find(|s| s.name() == name)?;
        Some(service.streams(kafka).first()?.application_id.clone())
    });
    let streams_of = move |process: &Process| {
        let app = spare_app.clone()?;
        process
            .all::<StreamsHandle>()
            .into_iter()
            .find(|h| h.application_id == app)
    };
    let main_streams = streams_of(&process);
    let spare_streams = spare.as_ref().and_then(&streams_of);
    let knob_info = KnobInfo {
        label: knob_value.label,
        value: knob_value.get(),
        min: knob_value.min,
        max: knob_value.max,
    };
    let description = Description {
        name: case_study.name,
        title: C::TITLE,
        summary: C::SUMMARY,
        api: process.url(),
        graph: graph(case_study.topics, &services),
        topics: case_study
            .topics
            .iter()
            .map(|t| TopicInfo {
                name: t.full_name(""),
                partitions: t.partitions,
                key: t.key,
                dlq: t.dlq_name(""),
            })
            .collect(),
        services: services.clone(),
        stores: case_study
            .services
            .iter()
            .map(|s| {
                let stores: Vec<String> = s
                    .streams(kafka)
                    .into_iter()
                    .flat_map(|c| c.stores)
                    .collect();
                (s.name(), stores)
            })
            .filter(|(_, stores)| !stores.is_empty())
            .collect(),
        queries: C::queries(),
        knob: knob_info,
        spare: C::SPARE.map(|service| SpareInfo { service }),
    };
    let live = Arc::new(Live {
        description,
        knob: knob_value,
        groups,
        topics: case_study
            .topics
            .iter()
            .map(|t| (kafka.topic(t), t))
            .collect(),
        main_streams,
        spare: Mutex::new(SpareState {
            running: spare.is_some(),
            streams: spare_streams,
        }),
        view: view::<C>,
        metrics: case_study
            .services
            .iter()
            .map(|s| (s.name(), s.metrics()))
            .collect(),
        producers,
    });
    Ok(Started {
        live,
        process,
        spare,
        simulator_stop,
        simulator,
        start_spare,
        streams_of: Box::new(streams_of),
    })
}

impl Started {
    pub async fn stop_spare(&mut self) -> Result<(), SpareError> {
        let service = self.spare_service()?;
        let Some(spare) = self.spare.take() else {
            return Err(SpareError::Already(service, "stopped"));
        };
        *self.live.spare.lock().expect("spare lock") = SpareState::default();
        spare.stop().await.map_err(SpareError::Failed)
    }

    pub async fn start_spare(&mut self) -> Result<(), SpareError> {
        let service = self.spare_service()?;
        if self.spare.is_some() {
            return Err(SpareError::Already(service, "running"));
        }
        let spare = (self.start_spare)().await.map_err(SpareError::Failed)?;
        *self.live.spare.lock().expect("spare lock") = SpareState {
            running: true,
            streams: (self.streams_of)(&spare),
        };
        self.spare = Some(spare);
        Ok(())
    }

    fn spare_service(&self) -> Result<&'static str, SpareError> {
        self.live
            .description
            .spare
            .as_ref()
            .map(|s| s.service)
            .ok_or_else(|| SpareError::None(self.live.name().to_owned()))
    }

    /// Stops the simulator first (nothing new arrives), then the spare, then every service
    /// (each commits what it processed and closes its files).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.simulator_stop.cancel();
        match self.simulator.await {
            Ok(Err(err)) => tracing::warn!(err = format!("{err:#}"), "simulator failed"),
            Err(err) => tracing::warn!(%err, "simulator panicked"),
            Ok(Ok(())) => {}
        }
        if let Some(spare) = self.spare {
            spare.stop().await?;
        }
        self.process.stop().await
    }
}
