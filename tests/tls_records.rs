//! The server's TLS stream (`ServerStream`: rustls's unbuffered API, the loop's one receive
//! buffer shared by every connection) against a rustls client whose records the test cuts up
//! and times itself: a record split across many reads, several records in one read, a partial
//! record left waiting while another connection uses the shared buffer, plaintext larger than
//! the reader's buffer, garbage after the handshake, key updates, close_notify both ways, and a
//! peer that stops reading. Then, through the server, a message larger than a turn's read
//! budget.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use tungstenite::Message;
use wschat::connection::Stream;
use wschat::tls::{ServerStream, ServerTls, TlsError};

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// What a connection spends on keeping bytes beyond the bytes themselves: the box they are in.
const BOOKKEEPING: usize = 128;

/// A self-signed certificate for `localhost`, as the server loads it and as a client trusts it.
struct Cert {
    dir: TempDir,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(&format!("tls-records-{name}"));
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self { dir, der: made.cert.der().clone() }
    }

    fn files(&self) -> (String, String) {
        let path = |name: &str| self.dir.join(name).to_str().unwrap().to_string();
        (path("cert.pem"), path("key.pem"))
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.files();
        ServerTls::load(cert.as_ref(), key.as_ref()).unwrap().config
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        tls_client_trusting(self.der.clone())
    }
}

/// A server-side stream and a client over one loopback connection, handshake done. The test
/// moves the bytes: the client's records go onto the socket as the test cuts them.
struct Pair {
    server: ServerStream,
    client: ClientConnection,
    sock: TcpStream,
    poll: Poll,
    events: Events,
}

impl Pair {
    fn new(cert: &Cert) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let mut server = ServerStream::new(mio::net::TcpStream::from_std(tcp), cert.server_config()).unwrap();
        let poll = Poll::new().unwrap();
        poll.registry().register(&mut server, Token(0), Interest::READABLE).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = ClientConnection::new(cert.client_config(), name).unwrap();
        let mut pair = Self { server, client, sock, poll, events: Events::with_capacity(4) };
        pair.handshake();
        pair
    }

    fn handshake(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while self.client.is_handshaking() || self.server.tls.is_handshaking() {
            assert!(Instant::now() < deadline, "no handshake");
            if self.client.wants_write() {
                self.client.write_tls(&mut self.sock).unwrap();
                let (plaintext, end) = self.server_reads(64);
                assert!(plaintext.is_empty() && end.kind() == ErrorKind::WouldBlock, "{end:?}");
            } else {
                self.client.read_tls(&mut self.sock).unwrap();
                self.client.process_new_packets().unwrap();
            }
        }
        assert_eq!(self.server.held(), 0, "a connection done with its handshake holds nothing");
    }

    /// The client's records for `plaintext`, one `write` call's worth, not sent.
    fn records(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.client.writer().write_all(plaintext).unwrap();
        let mut records = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut records).unwrap();
        }
        records
    }

    /// Puts `bytes` on the socket and waits until the server's side can read them.
    fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
        self.wait_readable();
    }

    fn wait_readable(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.poll
                .poll(&mut self.events, Some(deadline.saturating_duration_since(Instant::now())))
                .unwrap();
            if self.events.iter().any(|event| event.is_readable()) {
                return;
            }
            assert!(Instant::now() < deadline, "the bytes never reached the server");
        }
    }

    /// Reads the server's side with a buffer of `size` bytes until it stops: the plaintext, and
    /// what stopped it (`WouldBlock`; `UnexpectedEof` standing for `Ok(0)`; or the error).
    fn server_reads(&mut self, size: usize) -> (Vec<u8>, std::io::Error) {
        let mut plaintext = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            match self.server.read(&mut buf) {
                Ok(0) => return (plaintext, ErrorKind::UnexpectedEof.into()),
                Ok(n) => plaintext.extend_from_slice(&buf[..n]),
                Err(e) => return (plaintext, e),
            }
        }
    }

    /// Reads the client's side until `len` bytes of plaintext have come.
    fn client_reads(&mut self, len: usize) -> Vec<u8> {
        let mut plaintext = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.client.reader().read(&mut plaintext[got..]) {
                Ok(0) => panic!("the server's data ended after {got} of {len} bytes"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = self.server.flush();
                    self.client.read_tls(&mut self.sock).unwrap();
                    self.client.process_new_packets().unwrap();
                }
                Err(e) => panic!("client read: {e}"),
            }
        }
        plaintext
    }
}

/// Bytes that show any reordering or loss.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn a_record_trickling_in_byte_by_byte_is_held_in_at_most_its_own_bytes() {
    let cert = Cert::new("trickle");
    let mut pair = Pair::new(&cert);
    let sent = pattern(16_000, 1);
    let record = pair.records(&sent);
    let (last, start) = record.split_last().unwrap();
    for byte in start {
        pair.send(std::slice::from_ref(byte));
        let (plaintext, end) = pair.server_reads(64 * 1024);
        assert!(plaintext.is_empty() && end.kind() == ErrorKind::WouldBlock, "{end:?}");
        let held = pair.server.held();
        assert!(held <= record.len() + BOOKKEEPING, "holds {held} for a {}-byte record", record.len());
    }
    pair.send(std::slice::from_ref(last));
    let (plaintext, end) = pair.server_reads(64 * 1024);
    assert_eq!(end.kind(), ErrorKind::WouldBlock);
    assert!(plaintext == sent, "the record came out wrong");
    assert_eq!(pair.server.held(), 0, "nothing held once the record is read");
}

#[test]
fn several_records_in_one_read_come_out_in_order() {
    let cert = Cert::new("several");
    let mut pair = Pair::new(&cert);
    let messages: Vec<Vec<u8>> = (0..6).map(|i| pattern(500 + 3_000 * i, i as u8)).collect();
    let records: Vec<u8> = messages.iter().flat_map(|m| pair.records(m)).collect();
    pair.send(&records);
    // A reader's buffer smaller than every record: the rest of each waits for the next read.
    let (plaintext, end) = pair.server_reads(1_000);
    assert_eq!(end.kind(), ErrorKind::WouldBlock);
    assert!(plaintext == messages.concat(), "records lost, cut or reordered");
    assert_eq!(pair.server.held(), 0);
}

#[test]
fn a_partial_record_waits_while_another_connection_uses_the_shared_buffer() {
    let cert = Cert::new("partial");
    let (mut idle, mut busy) = (Pair::new(&cert), Pair::new(&cert));
    let sent = pattern(9_000, 2);
    let record = idle.records(&sent);
    let (first, second) = record.split_at(record.len() / 2);
    idle.send(first);
    let (plaintext, end) = idle.server_reads(64 * 1024);
    assert!(plaintext.is_empty() && end.kind() == ErrorKind::WouldBlock, "{end:?}");
    assert!(idle.server.held() <= record.len() + BOOKKEEPING);
    // Another connection fills the shared receive buffer with records of its own.
    for seed in 10..14 {
        let other = pattern(30_000, seed);
        let records = busy.records(&other);
        busy.send(&records);
        let (got, _) = busy.server_reads(64 * 1024);
        assert!(got == other);
    }
    idle.send(second);
    let (plaintext, end) = idle.server_reads(64 * 1024);
    assert_eq!(end.kind(), ErrorKind::WouldBlock);
    assert!(plaintext == sent, "the waiting half was overwritten");
    assert_eq!(idle.server.held(), 0);
}

#[test]
fn plaintext_larger_than_the_readers_buffer_is_served_from_what_was_decrypted() {
    let cert = Cert::new("small-reads");
    let mut pair = Pair::new(&cert);
    let sent = pattern(16_384, 3);
    let record = pair.records(&sent);
    pair.send(&record);
    let mut buf = [0u8; 100];
    assert_eq!(pair.server.read(&mut buf).unwrap(), 100);
    // The socket has nothing more: the next reads come from the record already decrypted.
    let (rest, end) = pair.server_reads(100);
    assert_eq!(end.kind(), ErrorKind::WouldBlock);
    assert!([&buf[..], &rest].concat() == sent);
    assert_eq!(pair.server.held(), 0);
}

/// What the client is told after sending `garbage` instead of a record, and what the server's
/// read said.
fn refused(garbage: &[u8]) -> (rustls::Error, String) {
    let cert = Cert::new("garbage");
    let mut pair = Pair::new(&cert);
    pair.send(garbage);
    let (plaintext, end) = pair.server_reads(1024);
    assert!(plaintext.is_empty());
    assert_eq!(end.kind(), ErrorKind::InvalidData, "{end:?}");
    assert!(end.get_ref().is_some_and(|inner| inner.is::<TlsError>()), "{end:?}");
    // Dead from now on, without panicking.
    assert!(pair.server.read(&mut [0u8; 16]).is_err());
    assert!(pair.server.write(b"late").is_err());
    let told = loop {
        match pair.client.read_tls(&mut pair.sock) {
            Ok(0) => panic!("closed without an alert"),
            Ok(_) => {}
            Err(e) => panic!("no alert: {e}"),
        }
        if let Err(e) = pair.client.process_new_packets() {
            break e;
        }
    };
    (told, end.to_string())
}

#[test]
fn garbage_after_the_handshake_is_refused_with_an_alert() {
    let kinds: [(&str, Vec<u8>); 4] = [
        ("an unknown record type", vec![0x99, 3, 3, 0, 5, 1, 2, 3, 4, 5]),
        ("a record that fails to decrypt", [&[0x17, 3, 3, 0, 40][..], &[0xAB; 40]].concat()),
        // Refused from its header: the server does not wait for 64 KiB that never come.
        ("a record longer than TLS allows", vec![0x17, 3, 3, 0xFF, 0xFF]),
        ("plain HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (kind, garbage) in kinds {
        let (told, logged) = refused(&garbage);
        assert!(matches!(told, rustls::Error::AlertReceived(_)), "{kind}: the client was told {told:?}");
        assert!(logged.starts_with("TLS error: "), "{kind}: {logged}");
    }
}

#[test]
fn a_key_update_from_the_client_is_answered_and_traffic_goes_on() {
    let cert = Cert::new("key-update");
    let mut pair = Pair::new(&cert);
    for round in 0..3u8 {
        pair.client.refresh_traffic_keys().unwrap();
        let sent = pattern(2_000, round);
        let records = pair.records(&sent);
        pair.send(&records);
        let (plaintext, end) = pair.server_reads(4096);
        assert_eq!(end.kind(), ErrorKind::WouldBlock);
        assert!(plaintext == sent);
        // The server's answer went first, so its next records are under its new keys.
        let reply = pattern(3_000, round + 100);
        assert_eq!(pair.server.write(&reply).unwrap(), reply.len());
        assert!(pair.client_reads(reply.len()) == reply);
    }
}

#[test]
fn close_notify_ends_the_data_cleanly_both_ways() {
    let cert = Cert::new("close");
    let mut pair = Pair::new(&cert);
    // The client's close_notify: the server's reads end with Ok(0) after the data before it.
    let sent = pattern(700, 4);
    let mut records = pair.records(&sent);
    pair.client.send_close_notify();
    pair.client.write_tls(&mut records).unwrap();
    pair.send(&records);
    let (plaintext, end) = pair.server_reads(4096);
    assert!(plaintext == sent);
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end:?}");
    // The server's own, after its last data: the client sees a clean end, not a truncation.
    let reply = pattern(900, 5);
    assert_eq!(pair.server.write(&reply).unwrap(), reply.len());
    pair.server.end_session();
    assert!(pair.client_reads(reply.len()) == reply);
    let mut rest = Vec::new();
    loop {
        match pair.client.reader().read_to_end(&mut rest) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                pair.client.read_tls(&mut pair.sock).unwrap();
                pair.client.process_new_packets().unwrap();
            }
            Err(e) => panic!("the server's end was not clean: {e}"),
        }
    }
    assert!(rest.is_empty());
}

#[test]
fn a_peer_that_stops_reading_makes_writes_would_block_and_nothing_is_lost() {
    let cert = Cert::new("backpressure");
    let mut pair = Pair::new(&cert);
    let chunk = pattern(10_000, 6);
    let mut accepted = 0;
    loop {
        match pair.server.write_vectored(&[std::io::IoSlice::new(&chunk), std::io::IoSlice::new(&chunk)]) {
            Ok(n) => accepted += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(accepted < 64 << 20, "writes never blocked");
    }
    // What waits for the socket is one write's records at most.
    assert!(pair.server.held() <= 64 * 1024 + 1024 + BOOKKEEPING, "holds {}", pair.server.held());
    assert!(pair.server.has_pending_output());
    let received = pair.client_reads(accepted);
    let expected: Vec<u8> = chunk.iter().chain(&chunk).copied().cycle().take(accepted).collect();
    assert!(received == expected, "bytes lost or reordered");
    pair.server.flush().unwrap();
    assert_eq!(pair.server.held(), 0);
}

#[test]
fn a_message_larger_than_a_turns_read_budget_crosses_tls_whole() {
    let cert = Cert::new("budget");
    let (cert_file, key_file) = cert.files();
    let server = TestServer::start(&[
        "--tls-cert",
        &cert_file,
        "--tls-key",
        &key_file,
        "--max-message-size",
        "1MiB",
        "--max-outbound",
        "4MiB",
    ]);
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = StreamOwned::new(ClientConnection::new(cert.client_config(), name).unwrap(), tcp);
    let url = format!("wss://localhost:{}/?nick=big", server.addr.port());
    let (mut ws, _) = tungstenite::client(url, tls).expect("WebSocket handshake over TLS");
    // More than the 256 KiB a connection may read in one turn: the rest waits for the next.
    let line: String = (0..700_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    ws.send(Message::text(line.clone())).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "the message never came back");
        if let Message::Text(text) = ws.read().unwrap() {
            if text.len() > line.len() {
                assert!(text.ends_with(&line), "the message came back changed");
                return;
            }
        }
    }
}
