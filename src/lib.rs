//! The `casestudies` umbrella: what spans all six case studies.
//!
//! * `casestudies topics` — every topic of every case study ([`topics_table`]);
//! * `casestudies broker` — the embedded broker alone, with every topic provisioned;
//! * `casestudies lag --group G` — a consumer group's lag per partition ([`lag_table`]);
//! * `casestudies bench streams` — the streams runtime's throughput and restore rate ([`bench`]);
//! * `casestudies dlq replay --topic T.dlq` — dead letters back to their source topic ([`dlq`]);
//! * `casestudies up` — every case study with its simulator, and the dashboard ([`up`], [`LIVE`]).
//!
//! Each case study stays independent: this crate only gathers their `topics::ALL` and their
//! streams applications ([`all_streams`]).

pub mod bench;
pub mod dlq;
pub mod up;

use shared::lag::GroupLag;
use shared::service::cli::CaseStudyCli;
use shared::streams::StreamsConfig;
use shared::{Kafka, TopicSpec};

/// Every case study and its topics, in the order of the course.
pub const CASE_STUDIES: &[(&str, &[TopicSpec])] = &[
    (movieflix::topics::CASE_STUDY, movieflix::topics::ALL),
    (gettaxi::topics::CASE_STUDY, gettaxi::topics::ALL),
    (
        mysocialmedia::topics::CASE_STUDY,
        mysocialmedia::topics::ALL,
    ),
    (mybank::topics::CASE_STUDY, mybank::topics::ALL),
    (ingestion::topics::CASE_STUDY, ingestion::topics::ALL),
    (logging::topics::CASE_STUDY, logging::topics::ALL),
];

/// Every case study `casestudies up` runs, in the order of the course: its name, how it starts
/// ([`up::case_study::start`] from its `live.rs`), its knob's default. A new case study adds one
/// line.
pub const LIVE: &[up::LiveEntry] = &[
    live::<movieflix::app::MovieFlix>(movieflix::topics::CASE_STUDY),
    live::<gettaxi::app::GetTaxi>(gettaxi::topics::CASE_STUDY),
    live::<mysocialmedia::app::MySocialMedia>(mysocialmedia::topics::CASE_STUDY),
    live::<mybank::app::MyBank>(mybank::topics::CASE_STUDY),
    live::<ingestion::app::Ingestion>(ingestion::topics::CASE_STUDY),
    live::<logging::app::Logging>(logging::topics::CASE_STUDY),
];

const fn live<C: shared::live::LiveCaseStudy>(name: &'static str) -> up::LiveEntry {
    up::LiveEntry {
        name,
        start: start::<C>,
        knob: knob::<C>,
    }
}

fn start<'a, C: shared::live::LiveCaseStudy>(
    kafka: &'a Kafka,
    dir: &'a std::path::Path,
    knob: Option<f64>,
) -> futures::future::LocalBoxFuture<'a, anyhow::Result<up::case_study::Started>> {
    Box::pin(up::case_study::start::<C>(kafka, dir, knob))
}

fn knob<C: shared::live::LiveCaseStudy>() -> f64 {
    C::knob().get()
}

/// The topics of all six case studies.
pub fn all_topics() -> Vec<TopicSpec> {
    CASE_STUDIES
        .iter()
        .flat_map(|(_, specs)| specs.iter().copied())
        .collect()
}

/// The streams applications of every service of every case study, named under `kafka`'s prefix.
pub fn all_streams(kafka: &Kafka) -> Vec<StreamsConfig> {
    let mut all = movieflix::app::MovieFlix::case_study().streams(kafka);
    all.extend(gettaxi::app::GetTaxi::case_study().streams(kafka));
    all.extend(mysocialmedia::app::MySocialMedia::case_study().streams(kafka));
    all.extend(mybank::app::MyBank::case_study().streams(kafka));
    all.extend(ingestion::app::Ingestion::case_study().streams(kafka));
    all.extend(logging::app::Logging::case_study().streams(kafka));
    all
}

/// What [`provision_broker`] created or found.
#[derive(Debug, Default)]
pub struct BrokerTopics {
    /// Topics of the six case studies, with their dead-letter topics.
    pub topics: usize,
    /// Changelog, repartition and instances topics of their streams applications.
    pub internal: usize,
}

/// What `casestudies broker` does once its embedded broker runs: provisions every topic of the
/// six case studies, then every internal topic of every streams application (the mock cluster
/// ignores `CreateTopics` from other processes, so services started elsewhere cannot create
/// them), each with its input's partition count.
pub async fn provision_broker(kafka: &Kafka) -> anyhow::Result<BrokerTopics> {
    let report = shared::provision(kafka, &all_topics()).await?;
    let mut topics = BrokerTopics {
        topics: report.created.len() + report.existing.len(),
        internal: 0,
    };
    for config in all_streams(kafka) {
        shared::streams::app::provision_internal_topics(kafka, &config).await?;
        topics.internal += shared::streams::internal_topics(&config, 1).len();
    }
    Ok(topics)
}

/// The `casestudies topics` table: one row per topic, with its full name under `prefix`.
pub fn topics_table(prefix: &str) -> String {
    let header = [
        "TOPIC",
        "KEY",
        "PARTITIONS",
        "RETENTION",
        "CLEANUP",
        "PRODUCERS -> CONSUMERS",
    ];
    let rows: Vec<Vec<String>> = all_topics()
        .iter()
        .map(|t| {
            vec![
                t.full_name(prefix),
                t.key.to_owned(),
                t.partitions.to_string(),
                t.retention.to_string(),
                t.cleanup.to_string(),
                format!("{} -> {}", t.producers.join(", "), t.consumers.join(", ")),
            ]
        })
        .collect();
    let mut out = render(&header, &rows);
    out.push_str(&format!(
        "\nEvery consumed topic also has a dead-letter topic `<topic>{}` ({} partitions, {}).\n",
        shared::topics::DLQ_SUFFIX,
        shared::topics::DLQ_PARTITIONS,
        shared::topics::DLQ_RETENTION,
    ));
    out
}

/// The `casestudies lag` table, like `kafka-consumer-groups --describe`.
pub fn lag_table(lag: &GroupLag) -> String {
    let header = [
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
    ];
    let rows: Vec<Vec<String>> = lag
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.committed
                    .map_or_else(|| "-".to_owned(), |o| o.to_string()),
                p.log_end.to_string(),
                p.lag.to_string(),
            ]
        })
        .collect();
    let mut out = match (&lag.state, &lag.not_described) {
        (Some(state), _) => format!(
            "GROUP {}  state: {state}  members: {}\n\n",
            lag.group,
            if lag.members.is_empty() {
                "none".to_owned()
            } else {
                lag.members.join(", ")
            }
        ),
        (None, reason) => format!(
            "GROUP {}  state and members: not reported ({})\n\n",
            lag.group,
            reason.as_deref().unwrap_or("no answer")
        ),
    };
    if rows.is_empty() {
        out.push_str("no committed offsets for this group\n");
    } else {
        out.push_str(&render(&header, &rows));
        out.push_str(&format!("\ntotal lag: {}\n", lag.total_lag()));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
