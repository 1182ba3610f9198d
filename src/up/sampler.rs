//! Once a second: every case study's topic rates, dead letters, consumer groups' lag (records
//! and seconds), services' health, knob and spare; every service's metrics into its history;
//! every other second the case studies' own views. The result is one JSON snapshot the page
//! gets over SSE: the server aggregates, the page never sees every record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use shared::Kafka;
use shared::live::Panel;

use super::case_study::Live;
use super::series::{self, History};
use super::tail::Tail;

/// Readings a topic's rate is averaged over (seconds).
const RATE_WINDOW: usize = 5;

#[derive(Serialize)]
struct TopicNow {
    rate: f64,
    records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlq_records: Option<u64>,
}

#[derive(Serialize, Clone)]
struct GroupNow {
    group: String,
    service: &'static str,
    topic: String,
    lag: i64,
    lag_seconds: f64,
}

#[derive(Serialize)]
struct ServiceNow {
    healthy: bool,
}

#[derive(Serialize)]
struct SpareNow {
    service: &'static str,
    running: bool,
    /// The partitions the second instance runs, and those the first runs.
    partitions: Vec<i32>,
    main_partitions: Vec<i32>,
}

#[derive(Serialize)]
struct CaseStudyNow {
    topics: BTreeMap<String, TopicNow>,
    groups: Vec<GroupNow>,
    services: BTreeMap<&'static str, ServiceNow>,
    knob: f64,
    spare: Option<SpareNow>,
    view: Vec<Panel>,
}

#[derive(Serialize)]
struct Snapshot<'a> {
    at_ms: i64,
    case_studies: BTreeMap<&'a str, CaseStudyNow>,
}

/// The committed offsets of every group, read with one consumer per group (it never joins).
struct Committed {
    consumers: HashMap<String, BaseConsumer>,
}

impl Committed {
    fn read(&self, group: &str, topic: &str, tail: &Tail) -> HashMap<i32, i64> {
        let (Some(consumer), Some(partitions)) =
            (self.consumers.get(group), tail.partitions(topic))
        else {
            return HashMap::new();
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition(topic, p);
        }
        match consumer.committed_offsets(tpl, Duration::from_secs(2)) {
            Ok(committed) => committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(err) => {
                tracing::debug!(%err, group, "committed offsets");
                HashMap::new()
            }
        }
    }
}

/// What the handlers read: the latest snapshot, the services' histories.
pub struct Sampled {
    pub snapshot: tokio::sync::watch::Receiver<Arc<String>>,
    pub history: Arc<Mutex<History>>,
}

/// Samples every second until `stop`.
pub fn start(
    kafka: &Kafka,
    lives: Vec<Arc<Live>>,
    tail: Tail,
    stop: CancellationToken,
) -> anyhow::Result<(Sampled, tokio::task::JoinHandle<()>)> {
    let mut consumers = HashMap::new();
    for live in &lives {
        for group in &live.groups {
            if consumers.contains_key(&group.group) {
                continue;
            }
            let consumer: BaseConsumer = kafka
                .client_config()
                .set("group.id", &group.group)
                .set("enable.auto.commit", "false")
                .create()?;
            consumers.insert(group.group.clone(), consumer);
        }
    }
    let committed = Arc::new(Committed { consumers });
    let (sender, snapshot) = tokio::sync::watch::channel(Arc::new("{}".to_owned()));
    let history = Arc::new(Mutex::new(History::default()));
    let sampled = Sampled {
        snapshot,
        history: Arc::clone(&history),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let prefix = kafka.prefix().to_owned();
    let task = tokio::spawn(async move {
        let mut readings: HashMap<String, VecDeque<(i64, u64)>> = HashMap::new();
        let mut views: HashMap<&'static str, Vec<Panel>> = HashMap::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut tick = 0u64;
        let mut last_at: Option<i64> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tick += 1;
            let now = chrono::Utc::now().timestamp_millis();
            let seconds = last_at.map_or(1.0, |at| ((now - at) as f64 / 1000.0).max(0.001));
            last_at = Some(now);
            // Lags: blocking calls to the broker, on a blocking thread.
            let groups = {
                let (lives, tail, committed, prefix) = (
                    lives.clone(),
                    tail.clone(),
                    Arc::clone(&committed),
                    prefix.clone(),
                );
                tokio::task::spawn_blocking(move || lags(&lives, &tail, &committed, &prefix, now))
                    .await
                    .unwrap_or_default()
            };
            if tick % 2 == 1 {
                let fetched = futures::future::join_all(lives.iter().map(|live| {
                    let view = live.view;
                    view(live.description.api.clone(), http.clone())
                }))
                .await;
                for (live, panels) in lives.iter().zip(fetched) {
                    views.insert(live.name(), panels);
                }
            }
            let health = futures::future::join_all(lives.iter().map(|live| {
                let url = format!("{}/readyz", live.description.api);
                let http = http.clone();
                async move {
                    http.get(url)
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            }))
            .await;
            let samples = series::parse(&shared::metrics::encode());
            let mut snapshot = Snapshot {
                at_ms: now,
                case_studies: BTreeMap::new(),
            };
            let mut history = history.lock().expect("history lock");
            for ((live, healthy), groups) in lives.iter().zip(health).zip(groups) {
                let mut topics = BTreeMap::new();
                for (full, spec) in &live.topics {
                    let seen = tail.seen(full);
                    let window = readings.entry(full.clone()).or_default();
                    window.push_back((now, seen));
                    if window.len() > RATE_WINDOW + 1 {
                        window.pop_front();
                    }
                    let rate = match (window.front(), window.back()) {
                        (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                            (n1 - n0) as f64 * 1000.0 / (t1 - t0) as f64
                        }
                        _ => 0.0,
                    };
                    topics.insert(
                        spec.full_name(""),
                        TopicNow {
                            rate,
                            records: seen,
                            dlq_records: spec.dlq_name(&prefix).map(|dlq| tail.seen(&dlq)),
                        },
                    );
                }
                for service in &live.description.services {
                    let names: Vec<String> = live
                        .groups
                        .iter()
                        .filter(|g| g.service == *service)
                        .map(|g| g.group.clone())
                        .collect();
                    let own = live
                        .metrics
                        .iter()
                        .find(|(s, _)| s == service)
                        .map_or(&[][..], |(_, names)| *names);
                    history.record_samples(service, &names, own, &samples, now, seconds);
                    let ours: Vec<&GroupNow> =
                        groups.iter().filter(|g| g.service == *service).collect();
                    if !ours.is_empty() {
                        let records = ours.iter().map(|g| g.lag).sum::<i64>() as f64;
                        let age = ours.iter().map(|g| g.lag_seconds).fold(0.0, f64::max);
                        history.push(service, "lag (records)".into(), "records", now, records);
                        history.push(service, "lag (seconds)".into(), "seconds", now, age);
                    }
                    for (topic, producers) in &live.producers {
                        if !producers.contains(service) {
                            continue;
                        }
                        let full = format!("{prefix}{topic}");
                        let produced = samples
                            .iter()
                            .filter(|s| {
                                s.name == "kafka_records_produced_total"
                                    && s.label("topic") == Some(full.as_str())
                            })
                            .map(|s| s.value)
                            .sum::<f64>();
                        if let Some(delta) =
                            history.delta(format!("{service}|produced|{full}"), produced)
                        {
                            history.push(
                                service,
                                format!("produced/s ({topic})"),
                                "per second",
                                now,
                                delta / seconds,
                            );
                        }
                    }
                }
                let spare = live.description.spare.as_ref().map(|s| {
                    let state = live.spare.lock().expect("spare lock");
                    SpareNow {
                        service: s.service,
                        running: state.running,
                        partitions: state
                            .streams
                            .as_ref()
                            .map(|h| h.stores.partitions())
                            .unwrap_or_default(),
                        main_partitions: live
                            .main_streams
                            .as_ref()
                            .map(|h| h.stores.partitions())
                            .unwrap_or_default(),
                    }
                });
                snapshot.case_studies.insert(
                    live.name(),
                    CaseStudyNow {
                        topics,
                        groups,
                        services: live
                            .description
                            .services
                            .iter()
                            .map(|s| (*s, ServiceNow { healthy }))
                            .collect(),
                        knob: live.knob.get(),
                        spare,
                        view: views.get(live.name()).cloned().unwrap_or_default(),
                    },
                );
            }
            drop(history);
            match serde_json::to_string(&snapshot) {
                Ok(json) => {
                    let _ = sender.send(Arc::new(json));
                }
                Err(err) => tracing::warn!(%err, "dashboard snapshot"),
            }
        }
    });
    Ok((sampled, task))
}

/// Every group's lag on every topic it reads, per case study.
fn lags(
    lives: &[Arc<Live>],
    tail: &Tail,
    committed: &Committed,
    prefix: &str,
    now_ms: i64,
) -> Vec<Vec<GroupNow>> {
    lives
        .iter()
        .map(|live| {
            let mut out = Vec::new();
            for group in &live.groups {
                for topic in &group.topics {
                    let offsets = committed.read(&group.group, topic, tail);
                    let (lag, lag_seconds) = tail.lag(topic, &offsets, now_ms);
                    out.push(GroupNow {
                        group: group
                            .group
                            .strip_prefix(prefix)
                            .unwrap_or(&group.group)
                            .to_owned(),
                        service: group.service,
                        topic: topic.strip_prefix(prefix).unwrap_or(topic).to_owned(),
                        lag,
                        lag_seconds,
                    });
                }
            }
            out
        })
        .collect()
}
