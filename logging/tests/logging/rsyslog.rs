//! rsyslog with `omkafka` (the real `rsyslogd`, configured by `logging/config/rsyslog.conf`):
//! an application's syslog messages over TCP (both framings) and UDP arrive on
//! `application_logs` keyed by their own application and host, re-written as RFC 5424, and the
//! log parser makes them the records they should be.

use std::time::Duration;

use logging::collectors::rsyslog::Rsyslog;
use logging::events::{Format, Level, LogRecord};
use logging::topics::{APPLICATION_LOGS, PARSED_LOGS};
use rdkafka::Message;
use shared::testkit::TestKafka;
use tokio::io::AsyncWriteExt;

use crate::{WAIT, eventually, key, parsed, spawn_only};

#[tokio::test(flavor = "multi_thread")]
async fn syslog_through_rsyslog_omkafka_is_keyed_by_app_and_host_and_parsed() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parser = spawn_only(&kafka, dir.path(), &["log-parser"]).await;
    let rsyslog = Rsyslog::start(kafka.kafka(), &dir.path().join("rsyslog"), &[])
        .await
        .unwrap();
    let to = rsyslog.syslog_address();

    // An application writes over TCP: an octet-counted RFC 5424 message with structured data,
    // one per line (RFC 5424, then BSD syslog).
    let counted = r#"<165>1 2026-03-01T11:59:58.123Z web-1 checkout 1234 ID47 [order@32473 id="7"] order paid"#;
    let mut stream = format!("{} {counted}", counted.len()).into_bytes();
    stream.extend_from_slice(b"<11>1 2026-03-01T11:59:59Z web-1 checkout 1234 - - card declined\n");
    stream.extend_from_slice(b"<13>Mar  1 11:00:00 db-1 postgres[42]: checkpoint complete\n");
    let mut tcp = tokio::net::TcpStream::connect(to).await.unwrap();
    tcp.write_all(&stream).await.unwrap();
    tcp.shutdown().await.unwrap();
    // And over UDP, one message per datagram.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for n in 0..3 {
        let datagram = format!("<14>1 2026-03-01T12:00:0{n}Z web-2 api - - - request {n}");
        udp.send_to(datagram.as_bytes(), to).await.unwrap();
    }

    // On application_logs: keyed app/host as our forwarder keys them, RFC 5424, no newline.
    let topic = kafka.kafka().topic(&APPLICATION_LOGS);
    let raw = kafka.wait_for_records(&topic, 6, WAIT).await.unwrap();
    let mut keyed: Vec<(String, String)> = raw
        .iter()
        .map(|m| {
            let line = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            (key(m).unwrap(), line)
        })
        .collect();
    keyed.sort();
    let keys: Vec<&str> = keyed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api/web-2",
            "api/web-2",
            "api/web-2",
            "checkout/web-1",
            "checkout/web-1",
            "postgres/db-1"
        ],
        "{keyed:#?}"
    );
    for (_, line) in &keyed {
        assert!(!line.ends_with('\n'), "{line:?}");
    }
    let paid = keyed
        .iter()
        .find(|(_, l)| l.ends_with("order paid"))
        .unwrap();
    assert!(
        paid.1.starts_with("<165>1 2026-03-01T11:59:58.123")
            && paid
                .1
                .contains(r#" web-1 checkout 1234 ID47 [order@32473 id="7"] order paid"#),
        "{paid:?}"
    );
    let bsd = &keyed.iter().find(|(k, _)| k == "postgres/db-1").unwrap().1;
    assert!(
        bsd.starts_with("<13>1 ") && bsd.ends_with(" db-1 postgres 42 - - checkpoint complete"),
        "BSD syslog re-written as RFC 5424: {bsd:?}"
    );

    // The log parser: every one an rfc5424 record with its host, service, level and message.
    let out = kafka
        .wait_for_records(&kafka.kafka().topic(&PARSED_LOGS), 6, WAIT)
        .await
        .unwrap();
    let records: Vec<LogRecord> = out.iter().map(parsed).collect();
    let find = |message: &str| {
        records
            .iter()
            .find(|r| r.message == message)
            .unwrap_or_else(|| panic!("{message:?} parsed: {records:#?}"))
    };
    for record in &records {
        assert_eq!(record.format, Format::Rfc5424, "{record:#?}");
    }
    let paid = find("order paid");
    assert_eq!(
        (paid.service.as_str(), paid.host.as_str()),
        ("checkout", "web-1")
    );
    assert_eq!(paid.level, Level::Notice);
    assert_eq!(paid.time.to_rfc3339(), "2026-03-01T11:59:58.123+00:00");
    assert_eq!(paid.fields["structured_data"]["order@32473"]["id"], "7");
    let declined = find("card declined");
    assert_eq!(declined.level, Level::Error);
    let checkpoint = find("checkpoint complete");
    assert_eq!(
        (checkpoint.service.as_str(), checkpoint.host.as_str()),
        ("postgres", "db-1")
    );
    assert_eq!(checkpoint.level, Level::Notice);
    for n in 0..3 {
        let request = find(&format!("request {n}"));
        assert_eq!(
            (
                request.service.as_str(),
                request.host.as_str(),
                request.level
            ),
            ("api", "web-2", Level::Info)
        );
    }

    // SIGTERM: rsyslog drains and exits cleanly; nothing more arrives.
    rsyslog.stop().await.unwrap();
    let all = eventually(WAIT, "application_logs read", || async {
        kafka
            .read_all(&topic, Duration::from_millis(500))
            .await
            .ok()
    })
    .await;
    assert_eq!(all.len(), 6);
    parser.stop().await.unwrap();
}
