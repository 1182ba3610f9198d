//! **Log parser** (streams, stateless): every raw line of `application_logs` → one normalized
//! [`LogRecord`] on `parsed_logs`, under the same key (so a host's lines stay in order).
//!
//! ```text
//! application_logs (key application/host, raw lines) ─▶ [parse_line] ─▶ parsed_logs (key application/host, LogRecord JSON)
//! ```
//!
//! **Formats**, tried in this order ([`parse_line`]):
//!
//! 1. a line starting with `{`: a **JSON** object. `time`/`timestamp`/`@timestamp`/`ts` (RFC 3339,
//!    or epoch seconds or milliseconds), `level`/`severity`/`lvl` (a name or pino's numbers),
//!    `message`/`msg`, `service`/`app`/`application`, `host`/`hostname` are taken; every other
//!    key goes to `fields`.
//! 2. a line starting with `<PRI>`: **syslog**, RFC 5424 first, then RFC 3164 (`syslog_loose`).
//! 3. an **Apache/nginx access log** line, common or combined format
//!    (`%h %l %u %t "%r" %>s %b ["%{Referer}i" "%{User-agent}i"]`, anything after in
//!    `fields.extra`); the level from the status: 5xx error, 4xx warning, else info.
//! 4. **RFC 3164 without `<PRI>`**, as syslog daemons write files (`Oct 11 22:14:15 host app[7]:
//!    …`, or an RFC 3339 time first, as rsyslog's file format).
//! 5. otherwise **unparsed**: kept, the whole text as the message, with the reason.
//!
//! A line that starts like one format but breaks its rules (`{` but not JSON, `<13>` but not
//! syslog) is unparsed with that format's reason, not tried as the others.
//!
//! **Bad bytes are kept, not dead-lettered.** A value that is not UTF-8 is decoded lossily
//! (each invalid sequence becomes U+FFFD), parsed like any line, and the record says so in its
//! `notes`; binary data (NUL bytes, or more than a tenth control characters or invalid
//! sequences) is `unparsed` with the reason "binary". A message over
//! [`MAX_MESSAGE_BYTES`](crate::events::MAX_MESSAGE_BYTES) is cut, with a note giving its
//! length: a 1 MB line becomes a 64 KiB message, never a record the broker would refuse.
//! What is dead-lettered (`application_logs.dlq`, by the runtime, with the reason and this
//! application's id in the headers) is only what is not a line at all: a record without a value
//! (a tombstone) or with a key that is not UTF-8.
//!
//! **Times** without a zone (RFC 3164's `Mmm dd hh:mm:ss`) are read as UTC, and their missing
//! year is the year the line was received — the previous one for a December line received in
//! January. A line with no readable time takes its record timestamp (when it was forwarded).
//!
//! **Delivery.** The streams runtime ([`shared::streams`]) commits a batch's input offsets only
//! after its outputs and dead letters are acknowledged: at-least-once, and a line parsed twice
//! after a crash gives the same record with the same `event_id` (its source coordinates), so a
//! sink can drop the repeat. `PROCESSING_GUARANTEE=exactly_once` makes it exactly once.

use std::sync::Arc;

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use shared::Kafka;
use shared::consumer::HandlerError;
use shared::streams::{self, ProcessorContext, StreamsConfig};
use syslog_loose::{Message, Variant};

use crate::events::{
    Format, Level, LogRecord, MAX_FIELDS_BYTES, MAX_MESSAGE_BYTES, log_key, sanitize_name,
    split_key,
};
use crate::topics::{APPLICATION_LOGS, PARSED_LOGS};

pub const APPLICATION_ID: &str = "logging-log-parser";

/// Where a line came from: its key and coordinates on `application_logs`.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub key: Option<&'a str>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record timestamp: when the line was forwarded.
    pub timestamp_ms: Option<i64>,
}

/// What the parser makes of a line before it becomes a [`LogRecord`].
#[derive(Debug, Default)]
struct Parsed {
    format: Option<Format>,
    time: Option<DateTime<Utc>>,
    host: Option<String>,
    service: Option<String>,
    level: Level,
    message: String,
    fields: Map<String, Value>,
    reason: Option<String>,
    notes: Vec<String>,
}

/// Parses one raw line (the value of a record of `application_logs`). Never fails and never
/// panics: a line that parses as nothing is `unparsed` with the reason (see the module's
/// list). The record always passes [`LogRecord::validate`].
pub fn parse_line(bytes: &[u8], origin: &Origin<'_>) -> LogRecord {
    let received_at = origin
        .timestamp_ms
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_else(Utc::now);
    let mut notes = Vec::new();
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(err) => {
            let lossy = String::from_utf8_lossy(bytes);
            // U+FFFD that were in the line already (valid UTF-8) are not replacements.
            let present = bytes.windows(3).filter(|w| w == b"\xEF\xBF\xBD").count();
            notes.push(format!(
                "not UTF-8 (first invalid byte at {}): decoded lossily, {} invalid sequences replaced with U+FFFD",
                err.valid_up_to(),
                lossy.matches('\u{FFFD}').count().saturating_sub(present)
            ));
            lossy
        }
    };
    let line = text.trim_end_matches(['\n', '\r']);
    let mut parsed = parse_text(line, received_at);
    parsed.notes.splice(0..0, notes);

    let (key_application, key_host) = origin.key.map_or((None, None), split_key);
    let service = sanitize_name(
        parsed
            .service
            .as_deref()
            .or(key_application)
            .unwrap_or("unknown"),
    );
    let host = sanitize_name(parsed.host.as_deref().or(key_host).unwrap_or("unknown"));
    let mut message = parsed.message;
    if message.len() > MAX_MESSAGE_BYTES {
        parsed.notes.push(format!(
            "message of {} bytes cut to {MAX_MESSAGE_BYTES}",
            message.len()
        ));
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let mut fields = parsed.fields;
    let fields_bytes = serde_json::to_vec(&fields).map_or(usize::MAX, |json| json.len());
    if fields_bytes > MAX_FIELDS_BYTES {
        parsed.notes.push(format!(
            "fields of {fields_bytes} bytes as JSON dropped (at most {MAX_FIELDS_BYTES})"
        ));
        fields = Map::new();
    }
    let format = parsed.format.unwrap_or(Format::Unparsed);
    let reason = match format {
        Format::Unparsed => Some(
            parsed
                .reason
                .unwrap_or_else(|| "parsed as no format".to_owned()),
        ),
        _ => None,
    };
    LogRecord {
        event_id: format!("{}/{}/{}", origin.topic, origin.partition, origin.offset),
        time: parsed.time.unwrap_or(received_at),
        received_at,
        host,
        service,
        level: parsed.level,
        message,
        fields,
        format,
        reason,
        notes: parsed.notes,
    }
}

/// The format dispatch of the module's list, on a decoded line without its line break.
fn parse_text(line: &str, received_at: DateTime<Utc>) -> Parsed {
    let unparsed = |reason: String| Parsed {
        message: line.to_owned(),
        reason: Some(reason),
        ..Parsed::default()
    };
    if line.trim().is_empty() {
        return unparsed("empty line".into());
    }
    if let Some(reason) = binary(line) {
        return unparsed(reason);
    }
    let start = line.trim_start();
    if start.starts_with('{') {
        return parse_json(start).unwrap_or_else(unparsed);
    }
    if start.starts_with('<') && start[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return parse_syslog(start, received_at, Variant::Either).unwrap_or_else(|reason| {
            unparsed(format!(
                "starts like syslog (<PRI>) but is neither RFC 5424 nor RFC 3164: {reason}"
            ))
        });
    }
    if let Some(parsed) = parse_access_log(start) {
        return parsed;
    }
    if let Ok(parsed) = parse_syslog(start, received_at, Variant::RFC3164) {
        return parsed;
    }
    unparsed(
        "not syslog (RFC 5424 or RFC 3164), a JSON object, nor an access log (common or combined format)"
            .into(),
    )
}

/// `Some(reason)` when the text is binary data rather than a line of text: any NUL, or more than
/// a tenth of its characters control characters (tab aside) or U+FFFD from invalid bytes.
fn binary(line: &str) -> Option<String> {
    let mut total = 0usize;
    let mut odd = 0usize;
    let mut nul = false;
    for c in line.chars() {
        total += 1;
        if c == '\0' {
            nul = true;
        }
        if (c.is_control() && c != '\t') || c == '\u{FFFD}' {
            odd += 1;
        }
    }
    (nul || odd * 10 > total).then(|| {
        format!(
            "binary data, not a line of text: {odd} of {total} characters are control characters or invalid UTF-8{}",
            if nul { " (NUL bytes)" } else { "" }
        )
    })
}

/// Syslog through `syslog_loose`, exactly: `Err` when the line is not `variant`.
fn parse_syslog(
    line: &str,
    received_at: DateTime<Utc>,
    variant: Variant,
) -> Result<Parsed, String> {
    // A December line received in January is last year's.
    let year = |(month, ..): syslog_loose::IncompleteDate| {
        if month > received_at.month() {
            received_at.year() - 1
        } else {
            received_at.year()
        }
    };
    let message = syslog_loose::parse_message_with_year_exact_tz(line, year, Some(Utc), variant)?;
    Ok(from_syslog(message))
}

fn from_syslog(message: Message<&str>) -> Parsed {
    let format = match message.protocol {
        syslog_loose::Protocol::RFC5424(_) => Format::Rfc5424,
        syslog_loose::Protocol::RFC3164 => Format::Rfc3164,
    };
    let mut fields = Map::new();
    if let Some(facility) = message.facility {
        fields.insert("facility".into(), facility.as_str().into());
    }
    if let Some(severity) = message.severity {
        fields.insert("severity".into(), severity.as_str().into());
    }
    match &message.procid {
        Some(syslog_loose::ProcId::PID(pid)) => {
            fields.insert("procid".into(), (*pid).into());
        }
        Some(syslog_loose::ProcId::Name(name)) => {
            fields.insert("procid".into(), (*name).into());
        }
        None => {}
    }
    if let Some(msgid) = message.msgid {
        fields.insert("msgid".into(), msgid.into());
    }
    if !message.structured_data.is_empty() {
        let mut data = Map::new();
        for element in &message.structured_data {
            let params: Map<String, Value> = element
                .params()
                .map(|(name, value)| ((*name).to_owned(), Value::String(value)))
                .collect();
            data.insert(element.id.to_owned(), Value::Object(params));
        }
        fields.insert("structured_data".into(), Value::Object(data));
    }
    Parsed {
        format: Some(format),
        time: message.timestamp.map(|t| t.with_timezone(&Utc)),
        host: message.hostname.map(str::to_owned),
        service: message.appname.map(str::to_owned),
        level: message
            .severity
            .map_or(Level::Unknown, |s| Level::from_severity(s as u8)),
        message: message.msg.to_owned(),
        fields,
        ..Parsed::default()
    }
}

const TIME_KEYS: &[&str] = &["time", "timestamp", "@timestamp", "ts"];
const LEVEL_KEYS: &[&str] = &["level", "severity", "lvl"];
const MESSAGE_KEYS: &[&str] = &["message", "msg", "@message"];
const SERVICE_KEYS: &[&str] = &["service", "app", "application"];
const HOST_KEYS: &[&str] = &["host", "hostname"];

/// A JSON object (see the module's list); `Err(reason)` when the line is not one.
fn parse_json(line: &str) -> Result<Parsed, String> {
    let mut object: Map<String, Value> = serde_json::from_str(line)
        .map_err(|err| format!("starts like JSON but is not a JSON object: {err}"))?;
    let mut parsed = Parsed {
        format: Some(Format::Json),
        ..Parsed::default()
    };
    // Each known key is taken out of the object when it is understood, and put back in
    // `fields` (with a note) when it is not.
    fn take(keys: &[&str], object: &mut Map<String, Value>) -> Option<(String, Value)> {
        let key = keys.iter().find(|k| object.contains_key(**k))?;
        object.remove(*key).map(|value| ((*key).to_owned(), value))
    }
    if let Some((key, value)) = take(TIME_KEYS, &mut object) {
        match json_time(&value) {
            Some(time) => parsed.time = Some(time),
            None => {
                parsed.notes.push(format!(
                    "{key} {value} is neither RFC 3339 nor epoch seconds or milliseconds: the record's timestamp is used"
                ));
                object.insert(key, value);
            }
        }
    }
    if let Some((key, value)) = take(LEVEL_KEYS, &mut object) {
        let level = match &value {
            Value::String(name) => Level::from_name(name),
            Value::Number(n) => n.as_i64().and_then(Level::from_number),
            _ => None,
        };
        match level {
            Some(level) => parsed.level = level,
            None => {
                parsed
                    .notes
                    .push(format!("{key} {value} is not a known level"));
                object.insert(key, value);
            }
        }
    }
    for (keys, slot) in [
        (SERVICE_KEYS, &mut parsed.service),
        (HOST_KEYS, &mut parsed.host),
    ] {
        if let Some((key, value)) = take(keys, &mut object) {
            match value {
                Value::String(name) if !name.trim().is_empty() => *slot = Some(name),
                other => {
                    object.insert(key, other);
                }
            }
        }
    }
    parsed.message = match take(MESSAGE_KEYS, &mut object) {
        Some((_, Value::String(message))) => message,
        Some((_, other)) => other.to_string(),
        // Nothing to call the message: the line is, so a search finds it.
        None => line.to_owned(),
    };
    parsed.fields = object;
    Ok(parsed)
}

/// RFC 3339, or a number of seconds (below 10^11) or milliseconds since the epoch.
fn json_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => {
            let n = n.as_f64()?;
            if !n.is_finite() || n < 0.0 {
                return None;
            }
            let ms = if n < 1e11 { n * 1000.0 } else { n };
            DateTime::from_timestamp_millis(ms as i64)
        }
        _ => None,
    }
}

/// An access log line, common or combined format; `None` when the line is not one.
fn parse_access_log(line: &str) -> Option<Parsed> {
    fn word<'a>(rest: &mut &'a str) -> Option<&'a str> {
        let (word, after) = rest.split_once(' ')?;
        *rest = after;
        (!word.is_empty()).then_some(word)
    }
    let mut rest = line;
    let client = word(&mut rest)?;
    let ident = word(&mut rest)?;
    let user = word(&mut rest)?;
    let after_time = rest.strip_prefix('[')?;
    let (time, after) = after_time.split_once("] ")?;
    let time = DateTime::<FixedOffset>::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z").ok()?;
    let (request, after) = quoted(after)?;
    let after = after.strip_prefix(' ')?;
    let (status, after) = after.split_once(' ').unwrap_or((after, ""));
    let status: u16 = status.parse().ok().filter(|s| (100..=599).contains(s))?;
    let (bytes, mut after) = after.split_once(' ').unwrap_or((after, ""));
    let bytes: Option<u64> = match bytes {
        "-" => None,
        digits => Some(digits.parse().ok()?),
    };
    let mut fields = Map::new();
    fields.insert("client".into(), client.into());
    for (name, value) in [("ident", ident), ("user", user)] {
        if value != "-" {
            fields.insert(name.into(), value.into());
        }
    }
    let parts: Vec<&str> = request.split(' ').collect();
    match parts.as_slice() {
        [method, path, protocol] => {
            fields.insert("method".into(), (*method).into());
            fields.insert("path".into(), (*path).into());
            fields.insert("protocol".into(), (*protocol).into());
        }
        _ => {
            fields.insert("request".into(), request.clone().into());
        }
    }
    fields.insert("status".into(), status.into());
    if let Some(bytes) = bytes {
        fields.insert("bytes".into(), bytes.into());
    }
    // Combined format: the referer and the user agent, quoted.
    if let Some((referer, after_referer)) = quoted(after)
        && let Some((agent, after_agent)) = after_referer.strip_prefix(' ').and_then(quoted)
    {
        for (name, value) in [("referer", referer), ("user_agent", agent)] {
            if value != "-" {
                fields.insert(name.into(), value.into());
            }
        }
        after = after_agent.strip_prefix(' ').unwrap_or(after_agent);
    }
    if !after.trim().is_empty() {
        fields.insert("extra".into(), after.trim().into());
    }
    Some(Parsed {
        format: Some(Format::AccessLog),
        time: Some(time.with_timezone(&Utc)),
        level: Level::from_status(status),
        message: line.to_owned(),
        fields,
        ..Parsed::default()
    })
}

/// A `"…"` string at the start of `text` (`\"` and `\\` escaped, as nginx writes them): its
/// content and the rest after the closing quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return None,
            },
            '"' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// A record of `application_logs`: its bytes, whatever they are. (The derive only satisfies
/// the runtime's bound; [`LogParser::decode`] makes it.)
#[derive(Debug, Clone, Deserialize)]
pub struct RawLine {
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub application_logs: String,
    pub parsed_logs: String,
}

pub fn config(kafka: &Kafka) -> (StreamsConfig, Topics) {
    let application_logs = kafka.topic(&APPLICATION_LOGS);
    let mut config = StreamsConfig::new(kafka, APPLICATION_ID, vec![application_logs.clone()], &[]);
    // A line is worth nothing late: no linger. Batches still grow under load.
    config.batch_size = 2000;
    let topics = Topics {
        application_logs,
        parsed_logs: kafka.topic(&PARSED_LOGS),
    };
    (config, topics)
}

/// The processor: [`parse_line`], emitted under the line's key.
pub struct LogParser {
    pub topics: Topics,
}

impl streams::Processor for LogParser {
    type Input = RawLine;

    /// Any bytes are a line: only a record without a value or with a key that is not UTF-8
    /// (both refused before this is called) is dead-lettered.
    fn decode(&self, _topic: &str, payload: &[u8]) -> Result<RawLine, String> {
        Ok(RawLine {
            bytes: payload.to_vec(),
        })
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        line: RawLine,
    ) -> Result<(), HandlerError> {
        let topic = ctx.topic().to_owned();
        let record = parse_line(
            &line.bytes,
            &Origin {
                key,
                topic: &topic,
                partition: ctx.partition(),
                offset: ctx.offset(),
                timestamp_ms: ctx.timestamp_ms(),
            },
        );
        // Keyed like the input; a line forwarded without a key (rsyslog's omkafka without
        // `key=`) gets `service/host` from what it says.
        let key = match key {
            Some(key) => key.to_owned(),
            None => log_key(&record.service, &record.host),
        };
        ctx.emit(&self.topics.parsed_logs, &key, &record)?;
        Ok(())
    }
}

/// The log parser on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "log-parser"
    }
    fn about(&self) -> &'static str {
        "Streams: application_logs (raw lines) → syslog, JSON, access logs or unparsed with the reason → parsed_logs."
    }
    fn streams(&self, kafka: &Kafka) -> Vec<StreamsConfig> {
        vec![config(kafka).0]
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let (config, topics) = config(&ctx.kafka);
        let handle = streams::start(
            &ctx.kafka,
            ctx.state(config),
            LogParser { topics },
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(shared::service::Running::new().streams(Arc::new(handle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T12:00:00Z, when the test lines were "forwarded".
    const RECEIVED: i64 = 1_772_366_400_000;

    fn origin(key: Option<&str>) -> Origin<'_> {
        Origin {
            key,
            topic: "logging.application_logs",
            partition: 3,
            offset: 42,
            timestamp_ms: Some(RECEIVED),
        }
    }

    fn parse(line: &str) -> LogRecord {
        parse_bytes(line.as_bytes())
    }

    fn parse_bytes(bytes: &[u8]) -> LogRecord {
        let record = parse_line(bytes, &origin(Some("checkout/web-1")));
        assert_eq!(record.validate(), Ok(()), "{record:#?}");
        record
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn received() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(RECEIVED).unwrap()
    }

    #[test]
    fn rfc5424_golden_line() {
        let r = parse(
            r#"<165>1 2026-03-01T11:59:58.123Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event log entry"#,
        );
        assert_eq!(r.format, Format::Rfc5424);
        assert_eq!(r.time, at("2026-03-01T11:59:58.123Z"));
        assert_eq!(r.received_at, received());
        assert_eq!(r.host, "mymachine.example.com");
        assert_eq!(r.service, "evntslog");
        assert_eq!(r.level, Level::Notice);
        assert_eq!(r.message, "An application event log entry");
        assert_eq!(r.fields["facility"], "local4");
        assert_eq!(r.fields["procid"], 1234);
        assert_eq!(r.fields["msgid"], "ID47");
        assert_eq!(
            r.fields["structured_data"]["exampleSDID@32473"]["eventSource"],
            "Application"
        );
        assert_eq!(r.event_id, "logging.application_logs/3/42");
        assert_eq!(r.reason, None);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn rfc5424_with_nil_values_falls_back_to_the_key() {
        let r = parse("<11>1 2026-03-01T11:59:58Z - - - - - disk full");
        assert_eq!(r.format, Format::Rfc5424);
        assert_eq!((r.service.as_str(), r.host.as_str()), ("checkout", "web-1"));
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.message, "disk full");
    }

    #[test]
    fn rfc3164_golden_line_gets_the_year_it_was_received() {
        let r = parse(
            "<34>Feb 28 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(r.format, Format::Rfc3164);
        assert_eq!(r.time, at("2026-02-28T22:14:15Z"));
        assert_eq!(r.host, "mymachine");
        assert_eq!(r.service, "su");
        assert_eq!(r.level, Level::Critical);
        assert_eq!(r.fields["facility"], "auth");
        assert_eq!(r.fields["procid"], 230);
        assert_eq!(r.message, "'su root' failed for lonvick on /dev/pts/8");
    }

    #[test]
    fn a_december_line_received_in_january_is_last_years() {
        let january = at("2027-01-01T00:00:05Z").timestamp_millis();
        let r = parse_line(
            b"<13>Dec 31 23:59:59 host app: happy new year",
            &Origin {
                timestamp_ms: Some(january),
                ..origin(None)
            },
        );
        assert_eq!(r.time, at("2026-12-31T23:59:59Z"));
    }

    #[test]
    fn syslog_files_without_pri_are_rfc3164() {
        let r = parse("Mar  1 11:00:00 web-2 sshd[99]: Accepted publickey for ann");
        assert_eq!(r.format, Format::Rfc3164);
        assert_eq!((r.host.as_str(), r.service.as_str()), ("web-2", "sshd"));
        assert_eq!(r.level, Level::Unknown);
        assert_eq!(r.message, "Accepted publickey for ann");
        // rsyslog's file format: an RFC 3339 time first.
        let r = parse("2026-03-01T11:00:00.5+01:00 web-3 cron[7]: job done");
        assert_eq!(r.format, Format::Rfc3164);
        assert_eq!(r.time, at("2026-03-01T10:00:00.5Z"));
        assert_eq!((r.host.as_str(), r.service.as_str()), ("web-3", "cron"));
    }

    #[test]
    fn json_golden_line() {
        let r = parse(
            r#"{"ts":"2026-03-01T11:59:00Z","level":"WARN","msg":"slow query","service":"orders","host":"db-1","duration_ms":812,"tags":["sql"]}"#,
        );
        assert_eq!(r.format, Format::Json);
        assert_eq!(r.time, at("2026-03-01T11:59:00Z"));
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.message, "slow query");
        assert_eq!((r.service.as_str(), r.host.as_str()), ("orders", "db-1"));
        assert_eq!(r.fields.len(), 2, "{:?}", r.fields);
        assert_eq!(r.fields["duration_ms"], 812);
        assert_eq!(r.fields["tags"][0], "sql");
    }

    #[test]
    fn json_numbers_for_time_and_level_and_what_is_not_understood_stays() {
        let r = parse(r#"{"time":1772366340,"level":50,"message":"boom"}"#);
        assert_eq!(r.time, at("2026-03-01T11:59:00Z"));
        assert_eq!(r.level, Level::Error);
        let r = parse(r#"{"time":1772366340123,"message":{"nested":true}}"#);
        assert_eq!(r.time, at("2026-03-01T11:59:00.123Z"));
        assert_eq!(r.message, r#"{"nested":true}"#);
        let r = parse(r#"{"time":"yesterday","level":"verbose","event":"x"}"#);
        assert_eq!(r.time, received());
        assert_eq!(r.level, Level::Unknown);
        assert_eq!(r.fields["time"], "yesterday");
        assert_eq!(r.fields["level"], "verbose");
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        // No message key: the line is the message, so a search finds it.
        assert_eq!(
            r.message,
            r#"{"time":"yesterday","level":"verbose","event":"x"}"#
        );
    }

    #[test]
    fn combined_access_log_golden_line() {
        let r = parse(
            r#"203.0.113.9 - frank [01/Mar/2026:12:59:36 +0100] "GET /cart?id=7 HTTP/1.1" 503 2326 "https://shop.example/" "Mozilla/5.0 (X11; \"quoted\")""#,
        );
        assert_eq!(r.format, Format::AccessLog);
        assert_eq!(r.time, at("2026-03-01T11:59:36Z"));
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.fields["client"], "203.0.113.9");
        assert_eq!(r.fields["user"], "frank");
        assert!(r.fields.get("ident").is_none());
        assert_eq!(r.fields["method"], "GET");
        assert_eq!(r.fields["path"], "/cart?id=7");
        assert_eq!(r.fields["protocol"], "HTTP/1.1");
        assert_eq!(r.fields["status"], 503);
        assert_eq!(r.fields["bytes"], 2326);
        assert_eq!(r.fields["referer"], "https://shop.example/");
        assert_eq!(r.fields["user_agent"], r#"Mozilla/5.0 (X11; "quoted")"#);
        assert_eq!((r.service.as_str(), r.host.as_str()), ("checkout", "web-1"));
    }

    #[test]
    fn common_access_log_and_status_levels() {
        let r = parse(
            r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 404 -"#,
        );
        assert_eq!(r.format, Format::AccessLog);
        assert_eq!(r.level, Level::Warning);
        assert!(r.fields.get("bytes").is_none() && r.fields.get("user").is_none());
        let r = parse(r#"::1 - - [10/Oct/2000:13:55:36 +0000] "-" 200 0 "-" "-" "10.0.0.1""#);
        assert_eq!(r.level, Level::Info);
        assert_eq!(r.fields["request"], "-");
        assert_eq!(r.fields["extra"], r#""10.0.0.1""#);
    }

    #[test]
    fn lines_of_no_format_are_kept_with_the_reason() {
        let r = parse("just some words\r\n");
        assert_eq!(r.format, Format::Unparsed);
        assert_eq!(r.message, "just some words");
        assert!(r.reason.as_deref().unwrap().contains("not syslog"), "{r:?}");
        assert_eq!((r.service.as_str(), r.host.as_str()), ("checkout", "web-1"));
        assert_eq!(r.time, received());
        assert_eq!(r.level, Level::Unknown);
        let r = parse("");
        assert_eq!(r.reason.as_deref(), Some("empty line"));
    }

    #[test]
    fn malformed_syslog_and_json_say_which_format_they_broke() {
        for line in [
            "<13>",
            "<999999999999>garbage",
            "<34>1 not-a-time host app - - - x",
            "<12",
        ] {
            let r = parse(line);
            assert_eq!(r.format, Format::Unparsed, "{line}: {r:?}");
            assert_eq!(r.message, line);
            assert!(
                r.reason.as_deref().unwrap().contains("syslog"),
                "{line}: {r:?}"
            );
        }
        let r = parse(r#"{"level":"info","msg":"cut"#);
        assert_eq!(r.format, Format::Unparsed);
        assert!(r.reason.as_deref().unwrap().contains("JSON"), "{r:?}");
        let r = parse(r#"1.2.3.4 - - [99/Foo/2026:99:00:00 +0000] "GET / HTTP/1.1" 200 1"#);
        assert_eq!(r.format, Format::Unparsed, "{r:?}");
    }

    #[test]
    fn binary_garbage_is_unparsed_never_a_panic() {
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let r = parse_bytes(&garbage);
        assert_eq!(r.format, Format::Unparsed);
        assert!(r.reason.as_deref().unwrap().contains("binary"), "{r:?}");
        assert!(r.notes[0].contains("not UTF-8"), "{:?}", r.notes);
        let r = parse_bytes(b"hello\0world");
        assert!(r.reason.as_deref().unwrap().contains("NUL"), "{r:?}");
        // Every prefix of a syslog line, and random bytes after one: no panic, always valid.
        let line = "<165>1 2026-03-01T11:59:58Z host app 1 ID [a b=\"c\"] msg";
        for end in 0..=line.len() {
            parse(&line[..end]);
        }
        for seed in 0..200u32 {
            let mut bytes = b"<13>".to_vec();
            bytes.extend((0..64).map(|i| ((seed * 31 + i * 17) % 256) as u8));
            parse_bytes(&bytes);
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_parsed() {
        let mut line = b"<14>1 2026-03-01T11:59:58Z host app - - - caf".to_vec();
        line.extend([0xE9, b' ', b'o', b'k']); // Latin-1 "é"
        let r = parse_bytes(&line);
        assert_eq!(r.format, Format::Rfc5424);
        assert_eq!(r.message, "caf\u{FFFD} ok");
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(
            r.notes[0].contains("first invalid byte at 45"),
            "{:?}",
            r.notes
        );
        assert!(r.notes[0].contains("1 invalid sequences"), "{:?}", r.notes);
    }

    #[test]
    fn a_one_megabyte_line_is_kept_cut_to_the_message_limit() {
        let mut line = "<14>1 2026-03-01T11:59:58Z host app - - - ".to_owned();
        // Multi-byte characters, so the cut must find a character boundary.
        while line.len() < 1024 * 1024 {
            line.push_str("é-");
        }
        let r = parse(&line);
        assert_eq!(r.format, Format::Rfc5424);
        assert!(r.message.len() <= MAX_MESSAGE_BYTES && r.message.len() > MAX_MESSAGE_BYTES - 4);
        assert!(r.notes[0].contains("cut to 65536"), "{:?}", r.notes);
        // Unparsed too, and a JSON line with huge fields.
        let r = parse(&"x".repeat(1024 * 1024));
        assert_eq!(r.format, Format::Unparsed);
        assert_eq!(r.message.len(), MAX_MESSAGE_BYTES);
        let json = format!(r#"{{"msg":"m","blob":"{}"}}"#, "b".repeat(1024 * 1024));
        let r = parse(&json);
        assert_eq!(r.format, Format::Json);
        assert!(r.fields.is_empty());
        assert!(r.notes[0].contains("fields of"), "{:?}", r.notes);
    }

    #[test]
    fn names_from_lines_are_sanitized_and_keyless_lines_use_unknown() {
        let r = parse(r#"{"msg":"m","service":"a/b","host":"h\u0007"}"#);
        assert_eq!((r.service.as_str(), r.host.as_str()), ("a_b", "h_"));
        let r = parse_line(b"words", &origin(None));
        assert_eq!(
            (r.service.as_str(), r.host.as_str()),
            ("unknown", "unknown")
        );
        assert_eq!(r.validate(), Ok(()));
    }
}
