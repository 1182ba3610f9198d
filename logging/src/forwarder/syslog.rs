//! Syslog over the network: TCP (RFC 6587: octet counting `LEN SP MSG`, or one message per line)
//! and UDP (one message per datagram, RFC 5426). Each message is shipped as it came, under the
//! key `app-name/hostname` read leniently from it (`syslog_loose`, RFC 5424 or 3164); a message
//! that names no application is `syslog`'s, one that names no host the sender's address's.
//!
//! **Back-pressure.** A TCP connection reads its next message only once the previous one has a
//! permit ([`super::shipper`]): with every permit taken it stops reading, the socket's buffers
//! fill and the sender's writes block — as rsyslog's own TCP forwarding expects. UDP has no way
//! to push back: a datagram that finds no permit is dropped and counted
//! (`logging_forwarder_udp_dropped_total`), and so is one the kernel drops when the socket's
//! receive buffer is full (counted by the kernel: `netstat -su`, "receive buffer errors").
//!
//! **Shutdown** stops accepting and reading; every message read is shipped and acknowledged
//! first. Bytes a sender wrote that were not read yet are lost with the connection (syslog over
//! TCP has no acknowledgements; RELP does).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::shipper::{Ack, Failure, Shipper};
use super::{Source, metrics};
use crate::events::log_key;

/// The longest octet count accepted (10 digits: up to 9,999,999,999 bytes announced; the
/// message is cut to `max_line_bytes` anyway).
const MAX_COUNT_DIGITS: usize = 10;

/// The key of a syslog message: `app-name/hostname`, leniently parsed.
pub fn syslog_key(message: &[u8], peer: SocketAddr) -> String {
    let text = String::from_utf8_lossy(message);
    let parsed = syslog_loose::parse_message(&text, syslog_loose::Variant::Either);
    let application = parsed.appname.unwrap_or("syslog");
    let peer_ip = peer.ip().to_string();
    let host = parsed.hostname.unwrap_or(&peer_ip);
    log_key(application, host)
}

/// Accepts connections until `stop`; each is read on a task of its own.
pub async fn serve_tcp(
    listener: TcpListener,
    shipper: Shipper,
    acks: mpsc::Sender<Ack>,
    max_line_bytes: usize,
    failure: Failure,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "syslog TCP connection");
                    connections.spawn(connection(
                        stream,
                        peer,
                        shipper.clone(),
                        acks.clone(),
                        max_line_bytes,
                        failure.clone(),
                        stop.clone(),
                    ));
                }
                Err(err) => {
                    tracing::warn!(%err, "syslog TCP accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(acks);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shipper: Shipper,
    acks: mpsc::Sender<Ack>,
    max_line_bytes: usize,
    failure: Failure,
    stop: CancellationToken,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            frame = read_frame(&mut reader, max_line_bytes) => frame,
        };
        let (message, length) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%peer, %err, "syslog TCP connection closed");
                return;
            }
        };
        if message.is_empty() {
            continue;
        }
        if length > message.len() {
            shipper.stats().truncated.fetch_add(1, Ordering::Relaxed);
            metrics().truncated.inc();
        }
        // Back-pressure: no permit, no next read.
        let Some(permit) = shipper.acquire(&stop).await else {
            return;
        };
        let key = syslog_key(&message, peer);
        match shipper.ship_async(&key, &message, permit).await {
            Ok(in_flight) => {
                shipper.stats().record_line(Source::Tcp);
                let ack = Ack::Line {
                    in_flight,
                    checkpoint: None,
                };
                if acks.send(ack).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                failure.set(format!("cannot ship a syslog message: {err}"), &stop);
                return;
            }
        }
    }
}

/// The next message of a TCP stream and its whole length (the message is cut to `max` bytes):
/// octet-counted when it starts with a digit (`LEN SP MSG`), else up to `\n` (a trailing `\r`
/// dropped). `None` at the end of the stream.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    let first = match reader.fill_buf().await?.first() {
        None => return Ok(None),
        Some(byte) => *byte,
    };
    let mut message = Vec::new();
    let mut length = 0usize;
    if first.is_ascii_digit() {
        // Octet counting: digits, a space, then exactly that many bytes. Digits followed by
        // anything else are the start of a line (a message without <PRI> that starts with a
        // date): they are kept as its first bytes.
        let mut digits = Vec::new();
        loop {
            let byte = read_byte(reader).await?;
            match byte {
                Some(b' ') if !digits.is_empty() => {
                    let count: usize = std::str::from_utf8(&digits)
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0);
                    let kept = count.min(max);
                    message.resize(kept, 0);
                    reader.read_exact(&mut message).await?;
                    let rest = (count - kept) as u64;
                    if rest > 0 {
                        tokio::io::copy(&mut (&mut *reader).take(rest), &mut tokio::io::sink())
                            .await?;
                    }
                    return Ok(Some((message, count)));
                }
                Some(digit) if digit.is_ascii_digit() && digits.len() < MAX_COUNT_DIGITS => {
                    digits.push(digit)
                }
                Some(b'\n') => {
                    // A line of digits only.
                    strip_cr(&mut digits);
                    let length = digits.len();
                    return Ok(Some((digits, length)));
                }
                Some(other) => {
                    digits.push(other);
                    length = digits.len();
                    message = digits;
                    message.truncate(max);
                    break;
                }
                None => {
                    let length = digits.len();
                    return Ok(Some((digits, length)));
                }
            }
        }
    }
    // Up to the newline, keeping at most `max` bytes.
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            // The stream ended mid-line: what was sent is the message.
            break;
        }
        let newline = buffer.iter().position(|b| *b == b'\n');
        let end = newline.unwrap_or(buffer.len());
        let room = max.saturating_sub(message.len());
        message.extend_from_slice(&buffer[..end.min(room)]);
        length += end;
        let consumed = newline.map_or(end, |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            break;
        }
    }
    if length == message.len() {
        strip_cr(&mut message);
        length = message.len();
    }
    Ok(Some((message, length)))
}

fn strip_cr(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
}

async fn read_byte<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<u8>> {
    let byte = reader.fill_buf().await?.first().copied();
    if byte.is_some() {
        reader.consume(1);
    }
    Ok(byte)
}

/// Receives datagrams until `stop`; one that finds every permit taken is dropped and counted.
pub async fn serve_udp(
    socket: UdpSocket,
    shipper: Shipper,
    acks: mpsc::Sender<Ack>,
    max_line_bytes: usize,
    failure: Failure,
    stop: CancellationToken,
) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::warn!(%err, "syslog UDP receive");
                    continue;
                }
            },
        };
        let mut message = &buffer[..n];
        while let Some(rest) = message
            .strip_suffix(b"\n")
            .or_else(|| message.strip_suffix(b"\r"))
        {
            message = rest;
        }
        if message.is_empty() {
            continue;
        }
        let Some(permit) = shipper.try_acquire() else {
            shipper.stats().udp_dropped.fetch_add(1, Ordering::Relaxed);
            metrics().udp_dropped.inc();
            continue;
        };
        if message.len() > max_line_bytes {
            shipper.stats().truncated.fetch_add(1, Ordering::Relaxed);
            metrics().truncated.inc();
            message = &message[..max_line_bytes];
        }
        let key = syslog_key(message, peer);
        match shipper.ship_async(&key, message, permit).await {
            Ok(in_flight) => {
                shipper.stats().record_line(Source::Udp);
                let ack = Ack::Line {
                    in_flight,
                    checkpoint: None,
                };
                if acks.send(ack).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                failure.set(format!("cannot ship a syslog message: {err}"), &stop);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<(String, usize)> {
        let mut reader = BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some((message, length)) = read_frame(&mut reader, max).await.unwrap() {
            out.push((String::from_utf8(message).unwrap(), length));
        }
        out
    }

    #[tokio::test]
    async fn octet_counted_and_newline_framed_messages_mix_on_one_stream() {
        let input = b"11 <13>hello\n x14 <14>two\nlines!!<15>third line\r\n2026-03-01T10:00:00Z h a: m\n12345\n";
        let got = frames(input, 1024).await;
        let messages: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "<13>hello\n ",
                "x14 <14>two",
                "lines!!<15>third line",
                "2026-03-01T10:00:00Z h a: m",
                "12345"
            ]
        );
    }

    #[tokio::test]
    async fn long_messages_are_cut_and_the_stream_stays_in_step() {
        let input = b"10 0123456789<13>a very long line\n<14>next\n";
        let got = frames(input, 4).await;
        assert_eq!(
            got,
            [
                ("0123".to_owned(), 10),
                ("<13>".to_owned(), 20),
                ("<14>".to_owned(), 8)
            ]
        );
        // A stream ending mid-line delivers what it had.
        assert_eq!(frames(b"<13>no newline", 100).await[0].0, "<13>no newline");
    }

    #[test]
    fn keys_come_from_the_message_or_the_sender() {
        let peer: SocketAddr = "192.0.2.7:514".parse().unwrap();
        assert_eq!(
            syslog_key(
                b"<165>1 2026-03-01T11:59:58Z web-1 checkout 12 - - paid",
                peer
            ),
            "checkout/web-1"
        );
        assert_eq!(
            syslog_key(b"<13>Mar  1 11:00:00 web-2 sshd[99]: hi", peer),
            "sshd/web-2"
        );
        assert_eq!(syslog_key(b"no header at all", peer), "syslog/192.0.2.7");
        assert_eq!(syslog_key(b"\xff\xfe garbage", peer), "syslog/192.0.2.7");
    }
}
