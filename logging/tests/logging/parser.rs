//! The log parser: a line of every format, and lines that are no format at all, become
//! normalized records on `parsed_logs` under their key; only records that are not lines (no
//! value, a key that is not UTF-8) are dead-lettered, and parsing goes on behind them.

use logging::events::{Format, Level};
use logging::topics::{APPLICATION_LOGS, PARSED_LOGS};
use rdkafka::Message;
use rdkafka::message::OwnedHeaders;
use shared::EventProducer;
use shared::testkit::TestKafka;

use crate::{WAIT, key, parsed, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn every_line_is_kept_normalized_and_only_non_lines_are_dead_lettered() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(&kafka, dir.path()).await;
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let raw = kafka.kafka().topic(&APPLICATION_LOGS);
    // 2026-03-01T12:00:00Z: when the lines were "forwarded".
    let received = 1_772_366_400_000;
    let send = |key: Option<Vec<u8>>, value: Option<Vec<u8>>| {
        let (producer, raw) = (producer.clone(), raw.clone());
        async move {
            producer
                .send(
                    &raw,
                    key.as_deref(),
                    value.as_deref(),
                    OwnedHeaders::new(),
                    Some(received),
                )
                .await
                .unwrap();
        }
    };
    let web = || Some(b"checkout/web-1".to_vec());

    let mut latin1 = b"<14>1 2026-03-01T11:59:58Z web-1 checkout - - - caf".to_vec();
    latin1.push(0xE9);
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 7919 % 251) as u8).collect();
    // Nearly 1 MB: the largest line a forwarder ships (librdkafka refuses records over 1 MB).
    let huge = format!(
        "<11>1 2026-03-01T11:59:59Z web-1 checkout - - - {}",
        "x".repeat(logging::forwarder::MAX_LINE_BYTES - 60)
    );
    let lines: Vec<Vec<u8>> = vec![
        br#"<165>1 2026-03-01T11:59:58.123Z web-1 checkout 1234 ID47 [order@32473 id="7"] order paid"#.to_vec(),
        b"<34>Mar  1 11:59:58 web-1 su[230]: 'su root' failed".to_vec(),
        br#"{"time":"2026-03-01T11:59:57Z","level":"error","msg":"payment declined","card":"visa"}"#.to_vec(),
        br#"203.0.113.9 - - [01/Mar/2026:12:59:36 +0100] "POST /pay HTTP/1.1" 502 17 "-" "curl/8.0""#.to_vec(),
        b"not a format anyone knows".to_vec(),
        garbage,
        latin1,
        huge.into_bytes(),
    ];
    for line in &lines[..4] {
        send(web(), Some(line.clone())).await;
    }
    // Not lines: a tombstone and a key that is not UTF-8, in the middle of the stream.
    send(web(), None).await;
    send(Some(vec![0xFF, 0xFE]), Some(b"<13>fine line".to_vec())).await;
    for line in &lines[4..] {
        send(web(), Some(line.clone())).await;
    }
    // Parsing went on behind them; a line without a key is keyed by what it says.
    send(
        None,
        Some(br#"{"msg":"keyless","service":"batch","host":"cron-1"}"#.to_vec()),
    )
    .await;

    let topic = kafka.kafka().topic(&PARSED_LOGS);
    let out = kafka.wait_for_records(&topic, 9, WAIT).await.unwrap();
    let (mut keyed, keyless): (Vec<_>, Vec<_>) = out
        .iter()
        .partition(|m| key(m).as_deref() == Some("checkout/web-1"));
    // One key, one partition: in the order they were sent.
    keyed.sort_by_key(|m| m.offset());
    let records: Vec<_> = keyed.iter().map(|m| parsed(m)).collect();
    assert_eq!(records.len(), 8, "{records:#?}");
    let formats: Vec<Format> = records.iter().map(|r| r.format).collect();
    assert_eq!(
        formats,
        [
            Format::Rfc5424,
            Format::Rfc3164,
            Format::Json,
            Format::AccessLog,
            Format::Unparsed,
            Format::Unparsed,
            Format::Rfc5424,
            Format::Rfc5424
        ]
    );
    let levels: Vec<Level> = records.iter().map(|r| r.level).collect();
    assert_eq!(
        levels,
        [
            Level::Notice,
            Level::Critical,
            Level::Error,
            Level::Error,
            Level::Unknown,
            Level::Unknown,
            Level::Info,
            Level::Error
        ]
    );
    let [syslog, bsd, json, access, words, binary, lossy, big] = &records[..] else {
        unreachable!()
    };
    assert_eq!(syslog.message, "order paid");
    assert_eq!(
        (syslog.service.as_str(), syslog.host.as_str()),
        ("checkout", "web-1")
    );
    assert_eq!(syslog.fields["structured_data"]["order@32473"]["id"], "7");
    assert_eq!(syslog.time.to_rfc3339(), "2026-03-01T11:59:58.123+00:00");
    assert_eq!(syslog.received_at.timestamp_millis(), received);
    assert_eq!(
        (bsd.service.as_str(), bsd.fields["procid"].as_i64()),
        ("su", Some(230))
    );
    assert_eq!(json.message, "payment declined");
    assert_eq!(json.fields["card"], "visa");
    assert_eq!(access.fields["status"], 502);
    assert_eq!(access.fields["path"], "/pay");
    assert_eq!(words.message, "not a format anyone knows");
    assert!(
        words.reason.as_deref().unwrap().contains("not syslog"),
        "{words:?}"
    );
    assert!(
        binary.reason.as_deref().unwrap().contains("binary"),
        "{binary:?}"
    );
    assert_eq!(lossy.message, "caf\u{FFFD}");
    assert!(lossy.notes[0].contains("not UTF-8"), "{lossy:?}");
    assert_eq!(big.message.len(), logging::events::MAX_MESSAGE_BYTES);
    assert!(big.notes[0].contains("cut"), "{big:?}");
    // Every record names its line on application_logs (`topic/partition/offset`), so a sink
    // can drop a repeat: one partition, increasing offsets, the tombstone's offset skipped.
    let sources: Vec<(i32, i64)> = records
        .iter()
        .map(|r| {
            let rest = r.event_id.strip_prefix(&format!("{raw}/")).unwrap();
            let (partition, offset) = rest.split_once('/').unwrap();
            (partition.parse().unwrap(), offset.parse().unwrap())
        })
        .collect();
    assert!(
        sources.iter().all(|(p, _)| *p == sources[0].0),
        "{sources:?}"
    );
    assert!(sources.windows(2).all(|w| w[0].1 < w[1].1), "{sources:?}");
    assert!(
        sources[4].1 >= sources[3].1 + 2,
        "the tombstone between them: {sources:?}"
    );
    assert_eq!(keyless.len(), 1);
    assert_eq!(key(keyless[0]).as_deref(), Some("batch/cron-1"));
    assert_eq!(parsed(keyless[0]).message, "keyless");

    let letters = kafka.read_dlq(&raw, 2, WAIT).await.unwrap();
    let application = format!(
        "{}{}",
        kafka.kafka().prefix(),
        logging::log_parser::APPLICATION_ID
    );
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    reasons.sort_unstable();
    assert!(reasons[0].contains("key is not UTF-8"), "{letters:#?}");
    assert!(reasons[1].contains("no payload"), "{letters:#?}");
    for letter in &letters {
        assert_eq!(letter.kind, "decode", "{letter:?}");
        assert_eq!(letter.application.as_deref(), Some(application.as_str()));
    }
    app.stop().await.unwrap();
}
