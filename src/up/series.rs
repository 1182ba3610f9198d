//! A service's metrics over the last minutes, for its panel: once a second the dashboard reads
//! the process's Prometheus registry (every case study runs in this process, so one registry
//! holds every service's counters), keeps the samples labelled with one of the service's
//! consumer groups or streams applications, and turns counters into rates, histograms into
//! p50/p99 of the last second, gauges into values. Plus what the dashboard measures itself: the
//! service's lag in records and seconds, and what it produces per second.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

/// Points kept per series: five minutes at one a second.
pub const POINTS: usize = 300;

/// One sample line of the text format: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text exposition (comments skipped, unparsable lines ignored).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let eq = body.find('=')?;
            let label = body[..eq].trim().to_owned();
            let quoted = body[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((label, value));
            body = &quoted[end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// One chart of a service's panel.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: &'static str,
    pub points: VecDeque<(i64, f64)>,
}

/// Every service's series, and the counters read last time (to turn them into rates).
#[derive(Default)]
pub struct History {
    series: HashMap<String, BTreeMap<String, Series>>,
    last: HashMap<String, f64>,
}

impl History {
    /// Adds `value` at `at_ms` to `service`'s series `name`.
    pub fn push(
        &mut self,
        service: &str,
        name: String,
        unit: &'static str,
        at_ms: i64,
        value: f64,
    ) {
        let series = self
            .series
            .entry(service.to_owned())
            .or_default()
            .entry(name.clone())
            .or_insert_with(|| Series {
                name,
                unit,
                points: VecDeque::new(),
            });
        if series.points.len() == POINTS {
            series.points.pop_front();
        }
        series.points.push_back((at_ms, value));
    }

    /// The change of counter `key` since the last call (none the first time, or after a reset).
    pub fn delta(&mut self, key: String, value: f64) -> Option<f64> {
        let previous = self.last.insert(key, value)?;
        (value >= previous).then_some(value - previous)
    }

    pub fn of(&self, service: &str) -> Vec<Series> {
        self.series
            .get(service)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Reads `samples` for a service whose groups/applications are `groups` (and whose own
    /// unlabelled metrics are `names`): counters as rates, gauges as values, histograms as
    /// p50/p99 of what was observed since the last read.
    pub fn record_samples(
        &mut self,
        service: &str,
        groups: &[String],
        names: &[&str],
        samples: &[Sample],
        at_ms: i64,
        seconds: f64,
    ) {
        let ours = |s: &&Sample| {
            names.iter().any(|n| {
                s.name
                    .strip_prefix(n)
                    .is_some_and(|rest| ["", "_bucket", "_total"].contains(&rest))
            }) || ["group", "application"]
                .iter()
                .any(|l| s.label(l).is_some_and(|v| groups.iter().any(|g| g == v)))
        };
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples.iter().filter(ours) {
            let qualifier = sample
                .label("topic")
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            let key = format!("{service}|{}|{:?}", sample.name, sample.labels);
            if let Some(base) = sample.name.strip_suffix("_bucket") {
                let le = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                if let Some(delta) = self.delta(key, sample.value) {
                    buckets
                        .entry(format!("{base}{qualifier}"))
                        .or_default()
                        .push((le, delta));
                }
            } else if sample.name.ends_with("_sum") || sample.name.ends_with("_count") {
                continue;
            } else if let Some(base) = sample.name.strip_suffix("_total") {
                if let Some(delta) = self.delta(key, sample.value) {
                    let name = format!("{}/s{qualifier}", base.replace('_', " "));
                    self.push(service, name, "per second", at_ms, delta / seconds);
                }
            } else {
                let name = format!("{}{qualifier}", sample.name.replace('_', " "));
                self.push(service, name, "", at_ms, sample.value);
            }
        }
        for (name, mut cumulative) in buckets {
            cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = cumulative.last().map_or(0.0, |(_, n)| *n);
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                let value = if total > 0.0 {
                    cumulative
                        .iter()
                        .find(|(_, n)| *n >= q * total)
                        .map_or(f64::NAN, |(le, _)| *le)
                } else {
                    f64::NAN
                };
                if value.is_finite() {
                    let name = format!("{} {label}", name.replace('_', " "));
                    self.push(service, name, "upper bound", at_ms, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_parsed_with_their_labels_and_escapes() {
        let text = "# HELP x y\n# TYPE x counter\n\
            kafka_records_processed_total{topic=\"a.b\",group=\"g\\\"1\"} 12\n\
            streams_lag{application=\"app\"} 3.5\n\
            up 1\n\
            broken{x=\"1\" \n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "kafka_records_processed_total");
        assert_eq!(samples[0].label("topic"), Some("a.b"));
        assert_eq!(samples[0].label("group"), Some("g\"1"));
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].value, 3.5);
        assert_eq!(samples[2].name, "up");
    }

    #[test]
    fn counters_become_rates_and_histograms_percentiles_of_the_last_second() {
        let mut history = History::default();
        let groups = vec!["g".to_owned()];
        let read = |processed: u32, fast: u32, all: u32| {
            parse(&format!(
                "kafka_records_processed_total{{topic=\"t\",group=\"g\"}} {processed}\n\
                 kafka_records_processed_total{{topic=\"t\",group=\"other\"}} 1000\n\
                 latency_seconds_bucket{{group=\"g\",le=\"0.01\"}} {fast}\n\
                 latency_seconds_bucket{{group=\"g\",le=\"0.1\"}} {all}\n\
                 latency_seconds_bucket{{group=\"g\",le=\"+Inf\"}} {all}\n"
            ))
        };
        history.record_samples("svc", &groups, &[], &read(10, 0, 0), 1000, 1.0);
        assert!(history.of("svc").is_empty(), "no rate from a first reading");
        history.record_samples("svc", &groups, &[], &read(30, 90, 100), 2000, 1.0);
        let series = history.of("svc");
        let find = |name: &str| {
            series
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name} in {series:?}"))
                .points
                .back()
                .unwrap()
                .1
        };
        assert_eq!(find("kafka records processed/s (t)"), 20.0);
        assert_eq!(find("latency seconds p50"), 0.01);
        assert_eq!(find("latency seconds p99"), 0.1);
        assert_eq!(
            series.len(),
            3,
            "the other group's counter is not the service's"
        );
    }

    #[test]
    fn an_unlabelled_histogram_is_the_service_that_names_it() {
        let mut history = History::default();
        let read = |fast: u32, all: u32| {
            parse(&format!(
                "hop_seconds_bucket{{le=\"0.01\"}} {fast}\n\
                 hop_seconds_bucket{{le=\"+Inf\"}} {all}\n\
                 hop_seconds_other_bucket{{le=\"+Inf\"}} {all}\n"
            ))
        };
        for service in ["named", "other"] {
            let names: &[&str] = if service == "named" {
                &["hop_seconds"]
            } else {
                &[]
            };
            history.record_samples(service, &[], names, &read(0, 0), 1000, 1.0);
            history.record_samples(service, &[], names, &read(99, 100), 2000, 1.0);
        }
        let named: Vec<String> = history.of("named").iter().map(|s| s.name.clone()).collect();
        assert_eq!(named, ["hop seconds p50", "hop seconds p99"]);
        assert!(history.of("other").is_empty(), "{:?}", history.of("other"));
    }
}
