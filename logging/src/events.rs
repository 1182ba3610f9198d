//! The records on Logging's topics, and the rules every reader applies to them.
//!
//! **`application_logs`** carries raw log lines: the record value is the line's bytes as a
//! forwarder read them (no JSON envelope, no trailing newline), the key `application/host`
//! ([`log_key`]), the record timestamp the time the forwarder read the line. Anything may be
//! written there (rsyslog, our forwarder, a test): the log parser judges each record.
//!
//! **`parsed_logs`** carries one [`LogRecord`] (JSON) per line of `application_logs`, under the
//! same key:
//!
//! | field | what | rule |
//! |---|---|---|
//! | `event_id` | `<application_logs topic>/<partition>/<offset>` of the line: a re-parse after a crash gives the same id, so a sink drops the duplicate | not empty |
//! | `time` | when the line says it happened; the record timestamp when it says nothing (or nothing readable) | — |
//! | `received_at` | the line's record timestamp on `application_logs` (when it was forwarded) | — |
//! | `host` | the line's own host (syslog HOSTNAME, JSON `host`), else the key's | [`validate_name`] |
//! | `service` | the line's own application (syslog APP-NAME, JSON `service`/`app`), else the key's | [`validate_name`] |
//! | `level` | [`Level`]: syslog severity, JSON `level`, an access log's status | — |
//! | `message` | the line's message (syslog MSG, JSON `message`/`msg`; an access log's or an unparsed line's whole text) | at most [`MAX_MESSAGE_BYTES`] (longer ones are cut, with a note) |
//! | `fields` | everything else the line carried (facility, structured data, a JSON line's other keys, an access log's status, path…) | at most [`MAX_FIELDS_BYTES`] as JSON |
//! | `format` | what it parsed as: [`Format`] | `unparsed` ⇔ a `reason` |
//! | `reason` | why an `unparsed` line parsed as nothing | — |
//! | `notes` | what was lost or guessed on the way (bytes that were not UTF-8, a message cut, an unreadable time) | — |
//!
//! **Every line is kept**: a line that parses as nothing becomes a record with format
//! `unparsed`, its text as the message and the reason. Only a record that is not a line at all
//! (no value; a key that is not UTF-8) is dead-lettered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::Event;

/// The longest message kept, in bytes: a longer one is cut at a character boundary, and a note
/// says how long it was. (Splunk's default `TRUNCATE` is 10,000 bytes.)
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest `fields` object, serialized; a larger one is replaced by a note.
pub const MAX_FIELDS_BYTES: usize = 16 * 1024;
/// The longest host or service name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// What a line parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Syslog, RFC 5424 (`<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`).
    Rfc5424,
    /// BSD syslog, RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`; also without `<PRI>`,
    /// as in `/var/log/syslog`, and with an RFC 3339 time, as rsyslog writes files).
    Rfc3164,
    /// A JSON object (structured application logs).
    Json,
    /// An Apache/nginx access log line, common or combined format.
    AccessLog,
    /// None of them: kept with the `reason`.
    Unparsed,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Rfc5424,
        Format::Rfc3164,
        Format::Json,
        Format::AccessLog,
        Format::Unparsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Json => "json",
            Format::AccessLog => "access_log",
            Format::Unparsed => "unparsed",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line's level, on syslog's scale (RFC 5424 severities) plus `trace` below `debug` and
/// `unknown` for a line that says nothing (or nothing recognizable; its spelling stays in
/// `fields`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Unknown,
    Trace,
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Alert => "alert",
            Level::Emergency => "emergency",
        }
    }

    /// A syslog severity (0 emergency … 7 debug).
    pub fn from_severity(severity: u8) -> Level {
        match severity {
            0 => Level::Emergency,
            1 => Level::Alert,
            2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            7 => Level::Debug,
            _ => Level::Unknown,
        }
    }

    /// A level as applications spell it, case-insensitively: syslog's names and their
    /// abbreviations (`err`, `crit`, `emerg`), log4j/logback/Python/Go names (`warn`, `fatal`,
    /// `panic`). `None` for anything else.
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "trace" | "finest" | "finer" => Level::Trace,
            "debug" | "dbg" | "fine" => Level::Debug,
            "info" | "information" | "informational" => Level::Info,
            "notice" => Level::Notice,
            "warn" | "warning" => Level::Warning,
            "error" | "err" | "severe" => Level::Error,
            "critical" | "crit" | "fatal" | "panic" | "dpanic" => Level::Critical,
            "alert" => Level::Alert,
            "emergency" | "emerg" => Level::Emergency,
            _ => return None,
        })
    }

    /// A numeric level of pino/bunyan (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal).
    pub fn from_number(level: i64) -> Option<Level> {
        Some(match level {
            10 => Level::Trace,
            20 => Level::Debug,
            30 => Level::Info,
            40 => Level::Warning,
            50 => Level::Error,
            60 => Level::Critical,
            _ => return None,
        })
    }

    /// An HTTP status as an access log's level: 5xx error, 4xx warning, anything else info.
    pub fn from_status(status: u16) -> Level {
        match status {
            500.. => Level::Error,
            400..=499 => Level::Warning,
            _ => Level::Info,
        }
    }

    /// `error` and worse: what an error rate counts.
    pub fn is_error(self) -> bool {
        self >= Level::Error
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalized log line on `parsed_logs` (see the module's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRecord {
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub host: String,
    pub service: String,
    pub level: Level,
    pub message: String,
    #[serde(default)]
    pub fields: Map<String, Value>,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Event for LogRecord {
    const TYPE: &'static str = "LogRecord";
    fn event_id(&self) -> String {
        self.event_id.clone()
    }
    fn event_time(&self) -> DateTime<Utc> {
        self.time
    }
}

impl LogRecord {
    /// Every rule of the module's table: what the parser guarantees and a sink may rely on.
    pub fn validate(&self) -> Result<(), String> {
        if self.event_id.is_empty() {
            return Err("event_id is empty".into());
        }
        validate_name("host", &self.host)?;
        validate_name("service", &self.service)?;
        if self.message.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "message is {} bytes, at most {MAX_MESSAGE_BYTES}",
                self.message.len()
            ));
        }
        let fields = serde_json::to_vec(&self.fields).map_or(usize::MAX, |json| json.len());
        if fields > MAX_FIELDS_BYTES {
            return Err(format!(
                "fields are {fields} bytes as JSON, at most {MAX_FIELDS_BYTES}"
            ));
        }
        match (self.format, &self.reason) {
            (Format::Unparsed, None) => Err("an unparsed record must say why (reason)".into()),
            (Format::Unparsed, Some(reason)) if reason.is_empty() => {
                Err("an unparsed record's reason is empty".into())
            }
            (Format::Unparsed, Some(_)) | (_, None) => Ok(()),
            (format, Some(reason)) => Err(format!(
                "a record parsed as {format} has a reason ({reason:?}): only unparsed ones do"
            )),
        }
    }
}

/// 1–[`MAX_NAME_CHARS`] characters, no control characters, no `/` (the key
/// `application/host` splits on it).
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "{what} must be 1 to {MAX_NAME_CHARS} characters, not {chars}"
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control() || *c == '/') {
        return Err(format!("{what} {name:?} has {bad:?}"));
    }
    Ok(())
}

/// `name` made valid for [`validate_name`]: control characters and `/` become `_`, at most
/// [`MAX_NAME_CHARS`] characters, `unknown` when empty.
pub fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .trim()
        .chars()
        .map(|c| if c.is_control() || c == '/' { '_' } else { c })
        .take(MAX_NAME_CHARS)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// The key of a line on `application_logs` (and of its record on `parsed_logs`):
/// `application/host`, each part [`sanitize_name`]d, so one host's lines of one application
/// stay in order on one partition.
pub fn log_key(application: &str, host: &str) -> String {
    format!("{}/{}", sanitize_name(application), sanitize_name(host))
}

/// `application/host` split back: `(application, host)`. A key without `/` is all
/// application; an empty part is `None`.
pub fn split_key(key: &str) -> (Option<&str>, Option<&str>) {
    let (application, host) = match key.split_once('/') {
        Some((application, host)) => (application, Some(host)),
        None => (key, None),
    };
    fn non_empty(s: &str) -> Option<&str> {
        (!s.trim().is_empty()).then_some(s)
    }
    (non_empty(application), host.and_then(non_empty))
}

/// The start of the minute (UTC) `at_ms` is in.
pub fn minute_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(60_000) * 60_000
}

/// A minute as keys spell it: `2026-03-01T12:00Z`.
pub fn minute_label(minute_ms: i64) -> String {
    DateTime::from_timestamp_millis(minute_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%MZ")
        .to_string()
}

/// The key of a log rollup on `log_rollups`: `service|minute` (`checkout|2026-03-01T12:00Z`).
pub fn rollup_key(service: &str, minute_ms: i64) -> String {
    format!("{service}|{}", minute_label(minute_ms))
}

/// **`log_rollups`**: one service's log lines in one minute of event time (the lines' `time`),
/// under [`rollup_key`]. Compacted: the latest record of a key is the answer.
///
/// * `lines` — every line of the service whose time is in `[minute, minute + 1 min)` and that
///   arrived before the minute closed; `levels` splits them by [`Level`] (levels with no line
///   are left out).
/// * `errors` — lines of level `error` or worse ([`Level::is_error`]: error, critical, alert,
///   emergency); `warning` is not an error. `error_rate` = `errors / lines` (0 when no lines).
/// * `final` — false while the minute is open; true once it closed (stream time ≥ the minute's
///   end + the grace period): the counts never change again.
/// * `late` — lines for this minute that arrived after it closed: not in the counts, counted
///   here (the rollup is sent again, still final, with `late` raised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LogRollup {
    pub service: String,
    pub minute: DateTime<Utc>,
    pub lines: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub levels: std::collections::BTreeMap<Level, u64>,
    pub late: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
}

impl LogRollup {
    pub fn key(&self) -> String {
        rollup_key(&self.service, self.minute.timestamp_millis())
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// **`alerts`**, keyed by service: an alert firing, and later the same alert (`alert_id`)
/// resolved. See [`crate::alerting`] for the rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `service|first minute of the run that fired it`: the firing and its resolution share it.
    pub alert_id: String,
    pub service: String,
    pub state: AlertState,
    /// The rule's name: `error_rate`.
    pub rule: String,
    /// The first minute over the threshold (of the run that fired).
    pub since: DateTime<Utc>,
    /// The minute that decided: the N-th over the threshold (firing), the first not over it
    /// (resolved).
    pub minute: DateTime<Utc>,
    /// The error rate and lines of `minute` (0 and 0 for a minute without lines).
    pub error_rate: f64,
    pub lines: u64,
    pub threshold: f64,
    pub minutes: u32,
    pub min_lines: u64,
}

/// **`application_metrics`**: one record holds one or more metric samples, in either of two
/// JSON shapes ([`decode_samples`]):
///
/// * **ours** — a [`MetricSample`] object or an array of them:
///   `{"name":"http_requests_seconds","labels":{"route":"/pay"},"value":0.21,"time":"2026-03-01T12:00:00Z"}`.
///   A Prometheus remote-write receiver writes this: `__name__` is `name`, the other labels are
///   `labels`, the sample's value and timestamp (ms) are `value` and `time`.
/// * **collectd `write_kafka`** with `Format JSON` — an array of value lists:
///   `[{"values":[1901474177],"dstypes":["counter"],"dsnames":["value"],"time":1280959128,"interval":10,"host":"leeloo","plugin":"cpu","plugin_instance":"0","type":"cpu","type_instance":"idle"}]`.
///   Each value of a list is a sample: `name` = `collectd_<plugin>_<type>`, plus `_<dsname>` when
///   the dsname is not `value` (as collectd_exporter names them); labels `host`, and
///   `plugin_instance`, `type_instance`, when not empty; `dstype` (`gauge`, `counter`,
///   `derive`, `absolute`); `time` from collectd's seconds (a fraction allowed). A value
///   collectd sends as `null` (NaN: not known) is skipped. Counters stay cumulative: the rollups
///   take values as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSample {
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
    pub time: DateTime<Utc>,
}

/// At most this many labels on a sample.
pub const MAX_LABELS: usize = 64;

impl MetricSample {
    pub fn validate(&self) -> Result<(), String> {
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(format!(
                "metric name must be 1 to {MAX_NAME_CHARS} characters, not {chars}"
            ));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!(
                "{} labels, at most {MAX_LABELS}",
                self.labels.len()
            ));
        }
        if let Some(bad) = self
            .name
            .chars()
            .find(|c| c.is_control() || "{}|\"".contains(*c))
        {
            return Err(format!("metric name {:?} has {bad:?}", self.name));
        }
        if !self.value.is_finite() {
            return Err(format!("value {} is not finite", self.value));
        }
        Ok(())
    }

    /// The series: the name and the labels sorted by name, `name{a="1",b="2"}` (values with
    /// `\` and `"` escaped); `name` alone without labels.
    pub fn series(&self) -> String {
        series_id(&self.name, &self.labels)
    }
}

/// `name{a="1",b="2"}`: a series as keys spell it.
pub fn series_id(name: &str, labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// One collectd value list (`write_kafka`, `Format JSON`).
#[derive(Debug, Deserialize)]
struct CollectdValueList {
    values: Vec<Option<f64>>,
    dstypes: Vec<String>,
    dsnames: Vec<String>,
    time: f64,
    #[allow(dead_code)]
    #[serde(default)]
    interval: f64,
    host: String,
    plugin: String,
    #[serde(default)]
    plugin_instance: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    type_instance: String,
    #[allow(dead_code)]
    #[serde(default)]
    meta: Option<Value>,
}

impl CollectdValueList {
    fn samples(self, out: &mut Vec<MetricSample>) -> Result<(), String> {
        if self.values.len() != self.dsnames.len() || self.values.len() != self.dstypes.len() {
            return Err(format!(
                "collectd value list with {} values, {} dsnames, {} dstypes",
                self.values.len(),
                self.dsnames.len(),
                self.dstypes.len()
            ));
        }
        let time = DateTime::from_timestamp_millis((self.time * 1000.0).round() as i64)
            .ok_or_else(|| format!("collectd time {} is out of range", self.time))?;
        for ((value, dsname), dstype) in self.values.iter().zip(&self.dsnames).zip(&self.dstypes) {
            let Some(value) = value else { continue };
            let mut name = format!("collectd_{}_{}", self.plugin, self.type_);
            if dsname != "value" {
                name = format!("{name}_{dsname}");
            }
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("host".to_owned(), self.host.clone());
            labels.insert("dstype".to_owned(), dstype.clone());
            if !self.plugin_instance.is_empty() {
                labels.insert("plugin_instance".to_owned(), self.plugin_instance.clone());
            }
            if !self.type_instance.is_empty() {
                labels.insert("type_instance".to_owned(), self.type_instance.clone());
            }
            out.push(MetricSample {
                name,
                labels,
                value: *value,
                time,
            });
        }
        Ok(())
    }
}

/// The samples of one `application_metrics` record, in either shape (see [`MetricSample`]),
/// each validated; `Err` (the reason) for anything else, or for a record without samples.
pub fn decode_samples(payload: &[u8]) -> Result<Vec<MetricSample>, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("metric record is not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        other => {
            return Err(format!(
                "metric record is neither an object nor an array: {other}"
            ));
        }
    };
    if items.is_empty() {
        return Err("metric record holds no samples".into());
    }
    let mut samples = Vec::new();
    for item in items {
        if item.get("values").is_some() && item.get("dsnames").is_some() {
            let list: CollectdValueList = serde_json::from_value(item)
                .map_err(|e| format!("not a collectd value list: {e}"))?;
            list.samples(&mut samples)?;
        } else {
            let sample: MetricSample =
                serde_json::from_value(item).map_err(|e| format!("not a metric sample: {e}"))?;
            samples.push(sample);
        }
    }
    for sample in &samples {
        sample.validate()?;
    }
    Ok(samples)
}

/// **`metric_rollups`**: one series in one minute of the samples' time, under `series|minute`
/// ([`series_id`], [`minute_label`]). `count`, `sum`, `min`, `max`, `mean` are exact; `p50` and
/// `p99` come from a log-bucketed sketch (`crate::metrics_aggregation::Sketch`): within 1 % of
/// a value of the series' samples whose rank is the quantile's. `overflow`: the synthetic
/// series `name{overflow="true",partition="<p>"}` of a metric name's samples of series over the cardinality cap
/// (aggregated together; the series themselves are not stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRollup {
    pub series: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub minute: DateTime<Utc>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    #[serde(default)]
    pub overflow: bool,
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord {
        let now = Utc::now();
        LogRecord {
            event_id: "logging.application_logs/0/0".into(),
            time: now,
            received_at: now,
            host: "web-1".into(),
            service: "checkout".into(),
            level: Level::Info,
            message: "hello".into(),
            fields: Map::new(),
            format: Format::Json,
            reason: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn collectd_value_lists_and_our_samples_decode_to_samples() {
        let collectd = br#"[{"values":[1901474177,null,0.5],"dstypes":["counter","gauge","gauge"],"dsnames":["value","rx","tx"],"time":1280959128.5,"interval":10,"host":"leeloo","plugin":"cpu","plugin_instance":"0","type":"cpu","type_instance":"idle"}]"#;
        let samples = decode_samples(collectd).unwrap();
        assert_eq!(samples.len(), 2, "null skipped: {samples:?}");
        assert_eq!(samples[0].name, "collectd_cpu_cpu");
        assert_eq!(samples[0].value, 1_901_474_177.0);
        assert_eq!(samples[0].time.timestamp_millis(), 1_280_959_128_500);
        assert_eq!(
            samples[0].series(),
            r#"collectd_cpu_cpu{dstype="counter",host="leeloo",plugin_instance="0",type_instance="idle"}"#
        );
        assert_eq!(samples[1].name, "collectd_cpu_cpu_tx");
        let ours = br#"{"name":"http_seconds","labels":{"route":"/pay","a":"x\"y"},"value":0.25,"time":"2026-03-01T12:00:00Z"}"#;
        let samples = decode_samples(ours).unwrap();
        assert_eq!(
            samples[0].series(),
            r#"http_seconds{a="x\"y",route="/pay"}"#
        );
        let many = br#"[{"name":"a","value":1,"time":"2026-03-01T12:00:00Z"},{"name":"b","value":2,"time":"2026-03-01T12:00:00Z"}]"#;
        assert_eq!(decode_samples(many).unwrap().len(), 2);
        for (bad, reason) in [
            (&b"nope"[..], "not JSON"),
            (b"[]", "no samples"),
            (b"42", "neither"),
            (br#"{"name":"a","value":"x","time":"2026-03-01T12:00:00Z"}"#, "not a metric sample"),
            (br#"{"name":"","value":1,"time":"2026-03-01T12:00:00Z"}"#, "metric name"),
            (br#"[{"values":[1],"dstypes":[],"dsnames":["value"],"time":1,"host":"h","plugin":"p","type":"t"}]"#, "1 values, 1 dsnames, 0 dstypes"),
        ] {
            let err = decode_samples(bad).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn levels_are_ordered_by_severity_and_errors_are_error_and_worse() {
        assert!(Level::Debug < Level::Info && Level::Warning < Level::Error);
        assert!(Level::Error.is_error() && Level::Emergency.is_error());
        assert!(!Level::Warning.is_error() && !Level::Unknown.is_error());
        assert_eq!(Level::from_severity(3), Level::Error);
        assert_eq!(Level::from_severity(0), Level::Emergency);
        assert_eq!(Level::from_severity(9), Level::Unknown);
        assert_eq!(Level::from_name(" WARN "), Some(Level::Warning));
        assert_eq!(Level::from_name("fatal"), Some(Level::Critical));
        assert_eq!(Level::from_name("verbose"), None);
        assert_eq!(Level::from_number(50), Some(Level::Error));
        assert_eq!(Level::from_status(503), Level::Error);
        assert_eq!(Level::from_status(404), Level::Warning);
        assert_eq!(Level::from_status(302), Level::Info);
        assert_eq!(
            serde_json::to_string(&Level::Warning).unwrap(),
            r#""warning""#
        );
        assert_eq!(
            serde_json::to_string(&Format::AccessLog).unwrap(),
            r#""access_log""#
        );
    }

    #[test]
    fn a_valid_record_round_trips_and_optional_parts_are_left_out() {
        let r = record();
        assert_eq!(r.validate(), Ok(()));
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("reason") && !json.contains("notes"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LogRecord>(&json).unwrap(), r);
    }

    #[test]
    fn unparsed_records_and_only_they_carry_a_reason() {
        let unparsed = LogRecord {
            format: Format::Unparsed,
            ..record()
        };
        assert!(unparsed.validate().unwrap_err().contains("reason"));
        let with_reason = LogRecord {
            reason: Some("not a format".into()),
            ..unparsed
        };
        assert_eq!(with_reason.validate(), Ok(()));
        let parsed_with_reason = LogRecord {
            format: Format::Rfc5424,
            ..with_reason
        };
        assert!(parsed_with_reason.validate().is_err());
    }

    #[test]
    fn sizes_and_names_are_bounded() {
        let long = LogRecord {
            message: "x".repeat(MAX_MESSAGE_BYTES + 1),
            ..record()
        };
        assert!(long.validate().unwrap_err().contains("message"));
        let mut fields = Map::new();
        fields.insert("x".into(), Value::String("y".repeat(MAX_FIELDS_BYTES)));
        let wide = LogRecord { fields, ..record() };
        assert!(wide.validate().unwrap_err().contains("fields"));
        for (host, reason) in [("", "1 to 255"), ("a/b", "'/'"), ("a\u{0}b", "\\0")] {
            let bad = LogRecord {
                host: host.into(),
                ..record()
            };
            assert!(bad.validate().unwrap_err().contains(reason), "{host:?}");
        }
        assert_eq!(sanitize_name(" a/b\n "), "a_b");
        assert_eq!(sanitize_name(""), "unknown");
        assert_eq!(sanitize_name(&"h".repeat(300)).len(), MAX_NAME_CHARS);
    }

    #[test]
    fn keys_are_application_slash_host() {
        assert_eq!(log_key("checkout", "web-1"), "checkout/web-1");
        assert_eq!(log_key("a/b", ""), "a_b/unknown");
        assert_eq!(
            split_key("checkout/web-1"),
            (Some("checkout"), Some("web-1"))
        );
        assert_eq!(split_key("checkout"), (Some("checkout"), None));
        assert_eq!(split_key("/web-1"), (None, Some("web-1")));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(record()).unwrap();
        json["colour"] = "red".into();
        assert!(serde_json::from_value::<LogRecord>(json).is_err());
    }
}
