//! Our forwarder (`logging forward`), as the command starts it: every line of a file exactly
//! once and in order across rename-and-recreate rotation, truncation (copytruncate), a restart
//! in the middle of a stream and a rotation while it was stopped; syslog over TCP (both
//! framings) and UDP, keyed by the messages' own application and host, parsed downstream.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use logging::events::Format;
use logging::forwarder::{ForwardArgs, Forwarder, Report};
use logging::topics::{APPLICATION_LOGS, PARSED_LOGS};
use rdkafka::Message;
use shared::testkit::TestKafka;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::{WAIT, key, parsed, spawn};

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix} line {n:04}")).collect()
}

/// A running forwarder and its stop token.
struct Running {
    forwarder: Forwarder,
    stop: CancellationToken,
}

impl Running {
    async fn start(kafka: &TestKafka, args: &ForwardArgs) -> Running {
        let stop = CancellationToken::new();
        let forwarder = Forwarder::start(kafka.kafka(), args, stop.clone())
            .await
            .unwrap();
        Running { forwarder, stop }
    }

    /// SIGTERM, as the command gets it: flush, save the positions.
    async fn stop(self) -> Report {
        self.stop.cancel();
        self.forwarder.join().await.unwrap()
    }
}

/// The values of `application_logs` under `key`, in partition order (one key, one partition).
async fn lines_of(kafka: &TestKafka, key_wanted: &str, at_least: usize) -> Vec<String> {
    let topic = kafka.kafka().topic(&APPLICATION_LOGS);
    crate::eventually(
        WAIT,
        &format!("{at_least} lines of {key_wanted}"),
        || async {
            let records = kafka
                .read_all(&topic, Duration::from_millis(500))
                .await
                .unwrap();
            let mut mine: Vec<_> = records
                .iter()
                .filter(|m| key(m).as_deref() == Some(key_wanted))
                .collect();
            mine.sort_by_key(|m| m.offset());
            let lines: Vec<String> = mine
                .iter()
                .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
                .collect();
            (lines.len() >= at_least).then_some(lines)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_line_once_in_order_across_rotation_truncation_and_restarts() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shop.log");
    let other = dir.path().join("other.log");
    let args = ForwardArgs {
        files: vec![log.clone(), other.clone()],
        host: Some("test-host".into()),
        poll: Duration::from_millis(50),
        rotate_wait: Duration::from_millis(500),
        max_line_bytes: 200,
        ..ForwardArgs::new(dir.path().join("data"))
    };
    let shop = "shop/test-host";
    let mut expected: Vec<String> = Vec::new();
    let write = |path: &Path, lines: Vec<String>, expected: &mut Vec<String>| {
        expected.extend(lines.iter().cloned());
        append(path, lines);
    };

    // Lines already there, a CRLF line, an empty line (skipped), a line over the limit (cut).
    write(&log, numbered("a", 0..100), &mut expected);
    append(
        &log,
        ["crlf line\r".to_owned(), String::new(), "x".repeat(450)],
    );
    expected.extend(["crlf line".to_owned(), "x".repeat(200)]);
    append(&other, numbered("o", 0..50));
    let running = Running::start(&kafka, &args).await;
    assert_eq!(lines_of(&kafka, shop, expected.len()).await, expected);
    assert_eq!(
        lines_of(&kafka, "other/test-host", 50).await,
        numbered("o", 0..50)
    );

    // Rename and recreate: the writer appends to the renamed file before it reopens.
    std::fs::rename(&log, dir.path().join("shop.log.1")).unwrap();
    write(
        &dir.path().join("shop.log.1"),
        numbered("b", 0..10),
        &mut expected,
    );
    write(&log, numbered("c", 0..40), &mut expected);
    assert_eq!(lines_of(&kafka, shop, expected.len()).await, expected);

    // copytruncate: copied away, truncated, written again from the start.
    std::fs::copy(&log, dir.path().join("shop.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    write(&log, numbered("d", 0..5), &mut expected);
    assert_eq!(lines_of(&kafka, shop, expected.len()).await, expected);

    // A restart in the middle of a stream: a writer appends while the forwarder stops and
    // starts again.
    let writer_log = log.clone();
    let stream = numbered("e", 0..300);
    expected.extend(stream.iter().cloned());
    let writer = std::thread::spawn(move || {
        for chunk in stream.chunks(10) {
            append(&writer_log, chunk.to_vec());
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    lines_of(&kafka, shop, expected.len() - 250).await;
    let first = running.stop().await;
    assert_eq!(first.accepted, first.acknowledged);
    let running = Running::start(&kafka, &args).await;
    writer.join().unwrap();
    assert_eq!(lines_of(&kafka, shop, expected.len()).await, expected);
    let second = running.stop().await;
    assert_eq!(second.accepted, second.acknowledged);

    // Rotated while stopped: the renamed file's unread lines come first, found by its inode.
    write(&log, numbered("f", 0..20), &mut expected);
    std::fs::rename(&log, dir.path().join("shop.log.3")).unwrap();
    write(&log, numbered("g", 0..20), &mut expected);
    append(&other, numbered("o", 50..60));
    let running = Running::start(&kafka, &args).await;
    assert_eq!(lines_of(&kafka, shop, expected.len()).await, expected);
    assert_eq!(
        lines_of(&kafka, "other/test-host", 60).await,
        numbered("o", 0..60)
    );
    running.stop().await;
    // Nothing more came meanwhile: exactly once.
    let all = lines_of(&kafka, shop, expected.len()).await;
    assert_eq!(all.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_tcp_and_udp_arrives_keyed_by_its_own_app_and_host() {
    let kafka = TestKafka::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parser = spawn(&kafka, dir.path()).await;
    let args = ForwardArgs {
        syslog_tcp: Some("127.0.0.1:0".parse().unwrap()),
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        ..ForwardArgs::new(dir.path().join("data"))
    };
    let running = Running::start(&kafka, &args).await;

    let mut tcp = tokio::net::TcpStream::connect(running.forwarder.syslog_tcp().unwrap())
        .await
        .unwrap();
    let counted = "<165>1 2026-03-01T11:59:58Z web-1 checkout 12 - - paid order 7";
    let mut stream = format!("{} {counted}", counted.len()).into_bytes();
    stream.extend_from_slice(b"<11>1 2026-03-01T11:59:59Z web-1 checkout 12 - - card declined\n");
    stream.extend_from_slice(b"<13>Mar  1 11:00:00 db-1 postgres[42]: checkpoint\r\n");
    tcp.write_all(&stream).await.unwrap();
    tcp.shutdown().await.unwrap();

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = running.forwarder.syslog_udp().unwrap();
    for n in 0..3 {
        let datagram = format!("<14>1 2026-03-01T12:00:0{n}Z web-2 api - - - request {n}\n");
        udp.send_to(datagram.as_bytes(), to).await.unwrap();
    }
    udp.send_to(b"no header at all", to).await.unwrap();

    let checkout = lines_of(&kafka, "checkout/web-1", 2).await;
    assert_eq!(
        checkout,
        [
            counted,
            "<11>1 2026-03-01T11:59:59Z web-1 checkout 12 - - card declined"
        ]
    );
    assert_eq!(
        lines_of(&kafka, "postgres/db-1", 1).await,
        ["<13>Mar  1 11:00:00 db-1 postgres[42]: checkpoint"]
    );
    let api = lines_of(&kafka, "api/web-2", 3).await;
    assert_eq!(api.len(), 3);
    for (n, line) in api.iter().enumerate() {
        assert!(line.ends_with(&format!("request {n}")), "{api:?}");
    }
    assert_eq!(
        lines_of(&kafka, "syslog/127.0.0.1", 1).await,
        ["no header at all"]
    );
    let report = running.stop().await;
    assert_eq!(report.accepted, 7);
    assert_eq!(report.acknowledged, 7);
    assert_eq!(report.udp_dropped, 0);

    // And the parser made them records.
    let topic = kafka.kafka().topic(&PARSED_LOGS);
    let out = kafka.wait_for_records(&topic, 7, WAIT).await.unwrap();
    let declined = out
        .iter()
        .map(parsed)
        .find(|r| r.message == "card declined")
        .expect("the declined card, parsed");
    assert_eq!(declined.format, Format::Rfc5424);
    assert!(declined.level.is_error());
    assert_eq!(
        (declined.service.as_str(), declined.host.as_str()),
        ("checkout", "web-1")
    );
    parser.stop().await.unwrap();
}
