//! Test harness: starts the real `wschat-server` binary on `127.0.0.1:0` and connects real
//! clients to it. Every wait is bounded by a deadline (socket read timeouts), never a sleep.
//! [`Chat`] (in `chat.rs`) is the chat as a scenario sees it, one process or a cluster of two
//! sharing a Redis, and [`both_modes!`] runs a scenario both ways.

#![allow(dead_code)]

pub mod chat;
pub mod opcode;
pub mod redis;
pub mod redis_proxy;
pub mod tcp;

// Each test file includes this module, and most use only part of it.
#[allow(unused_imports)]
pub(crate) use chat::both_modes;
#[allow(unused_imports)]
pub use chat::{Chat, Mode};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use wschat::wire::{self, FrameHeader, UpgradeRequest};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocket<TcpStream>;

/// A running server process, killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the server with extra flags and waits for its "listening on" line.
    pub fn start(flags: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_wschat-server")), flags)
    }

    /// Like [`start`](Self::start), on a given address (another server's, with `--reuse-port`).
    pub fn start_at(addr: SocketAddr, flags: &[&str]) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_wschat-server")), &addr.to_string(), flags)
    }

    /// Like [`start`](Self::start), through a prepared command (e.g. a shell that sets ulimit).
    pub fn start_with(command: Command, flags: &[&str]) -> Self {
        Self::spawn(command, "127.0.0.1:0", flags)
    }

    fn spawn(mut command: Command, addr: &str, flags: &[&str]) -> Self {
        let mut child = command
            .arg(addr)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wschat-server");
        let stderr = child.stderr.take().expect("stderr");
        let pid = child.id();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            // WSCHAT_TEST_LOG=1 shows every server's log as the test runs, for debugging; the
            // pid tells a cluster's processes apart.
            let echo = std::env::var_os("WSCHAT_TEST_LOG").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[server {pid}] {line}");
                }
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = addr_tx.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx.recv_timeout(WAIT).expect("server did not report its address");
        Self { child, addr: addr.parse().expect("address"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Connects a WebSocket client to `path` (e.g. `/`, `/echo`, `/?nick=bob`).
    #[track_caller]
    pub fn connect(&self, path: &str) -> Client {
        let stream = self.tcp();
        let (ws, _) = tungstenite::client(self.url(path), stream).expect("websocket handshake");
        ws
    }

    /// Connects a chat client and consumes its welcome notice; returns it with its nick.
    #[track_caller]
    pub fn chat_client(&self, nick: &str) -> Client {
        let mut ws = self.connect(&format!("/?nick={nick}"));
        let welcome = recv_text(&mut ws);
        assert!(welcome.starts_with(&format!("*** welcome, you are {nick} ")), "{welcome}");
        ws
    }

    /// Connects one chat client per nick and returns them once every one of them has seen the
    /// last one join, so a test starts from a quiet room.
    #[track_caller]
    pub fn chat_room(&self, nicks: &[&str]) -> Vec<Client> {
        let mut clients: Vec<Client> = nicks.iter().map(|nick| self.chat_client(nick)).collect();
        let last_join = format!("*** {} joined lobby", nicks[nicks.len() - 1]);
        for ws in clients.iter_mut() {
            recv_until(ws, |t| t == last_join);
        }
        clients
    }

    /// A plain TCP connection with read timeouts set.
    pub fn tcp(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// The server's log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line containing {needle:?}; log: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory of the server process so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("status field")
    }

    /// CPU time (user + system) the server has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// The `--metrics` listener's address (`HOST:PORT`), from the start-up log.
    pub fn metrics_addr(&self) -> String {
        let line = self.wait_for_log("metrics at http://");
        line.split("metrics at http://").nth(1).unwrap().trim_end_matches("/metrics").to_string()
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process (SIGSTOP) and waits (bounded) until it is stopped: from then on it
    /// runs none of its loop, and whatever reaches its sockets waits there, in order, until
    /// [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("STOP");
        let deadline = Instant::now() + WAIT;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
            // The state is the field after the parenthesised command name; `T` is stopped.
            if stat[stat.rfind(')').unwrap() + 2..].starts_with('T') {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not stop: {stat}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets a [`pause`](Self::pause)d process run again.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Sends a signal (e.g. "TERM") to the server process.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next data message, skipping pings and pongs (tungstenite answers pings itself).
#[track_caller]
pub fn recv(ws: &mut Client) -> Message {
    match recv_by(ws, Instant::now() + WAIT) {
        Some(message) => message,
        None => panic!("no message within {WAIT:?}"),
    }
}

/// The next data message if one comes before `deadline`.
#[track_caller]
pub fn recv_by(ws: &mut Client, deadline: Instant) -> Option<Message> {
    let message = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        ws.get_ref().set_read_timeout(Some(left)).unwrap();
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => break Some(other),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break None
            }
            Err(e) => panic!("read message: {e}"),
        }
    };
    ws.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    message
}

/// The next text message.
#[track_caller]
pub fn recv_text(ws: &mut Client) -> String {
    match recv(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads text messages until one satisfies `wanted`, returning it. Bounded as a whole, not
/// only per message: a stream of other messages cannot keep it waiting past [`WAIT`]. If
/// nothing matches, the failure lists what came instead.
#[track_caller]
pub fn recv_until(ws: &mut Client, wanted: impl Fn(&str) -> bool) -> String {
    recv_until_or(ws, wanted, "the awaited message")
}

/// Reads text messages until `line` itself arrives (bounded like [`recv_until`]).
#[track_caller]
pub fn recv_line(ws: &mut Client, line: &str) {
    recv_until_or(ws, |t| t == line, &format!("{line:?}"));
}

#[track_caller]
fn recv_until_or(ws: &mut Client, wanted: impl Fn(&str) -> bool, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut other = Vec::new();
    while let Some(message) = recv_by(ws, deadline) {
        match message {
            Message::Text(text) if wanted(&text) => return text.to_string(),
            Message::Text(text) => other.push(text.to_string()),
            message => other.push(format!("{message:?}")),
        }
    }
    panic!("{what} did not come within {WAIT:?}; came instead: {other:#?}")
}

pub fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// Reads until the server's close frame arrives; returns its code and reason.
#[track_caller]
pub fn expect_close(ws: &mut Client) -> (CloseCode, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return (frame.code, frame.reason.to_string()),
            Ok(Message::Close(None)) => panic!("close without a status code"),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// After a close exchange, the server closes the TCP connection: reading reaches EOF.
pub fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            // A signal (another test's server exiting) interrupted the read: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

// ----- raw WebSocket frames, for what a well-behaved client library will not send -----

/// Performs the opening handshake by hand and returns the socket positioned after the 101 head.
#[track_caller]
pub fn raw_handshake(server: &TestServer, path: &str) -> TcpStream {
    let mut stream = server.tcp();
    let host = server.addr.to_string();
    stream.write_all(&UpgradeRequest::new(&host, path).to_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// The upgrade request for `path` on this server, as text (tests edit it into bad requests).
pub fn upgrade_request(server: &TestServer, path: &str) -> String {
    UpgradeRequest::new(&server.addr.to_string(), path).to_string()
}

/// Reads an HTTP response head byte by byte (so nothing after it is consumed).
pub fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended inside the response head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8(head).unwrap()
}

/// Sends a raw HTTP request and returns the whole response (until the server closes).
pub fn http_exchange(server: &TestServer, request: &str) -> String {
    let mut stream = server.tcp();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Encodes one client frame: `first_byte` is FIN/RSV/opcode, the payload is masked unless
/// `masked` is false.
pub fn client_frame(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    wire::client_frame(first_byte, payload, masked.then_some([0x37, 0xfa, 0x21, 0x3d]))
}

/// Reads one frame through `read_exact` (the caller's way of waiting for bytes): its header
/// and payload.
pub fn read_frame_with<E>(
    mut read_exact: impl FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<(FrameHeader, Vec<u8>), E> {
    let mut head = [0u8; 14];
    read_exact(&mut head[..2])?;
    let len = wire::header_len(head[1]);
    read_exact(&mut head[2..len])?;
    let header = wire::parse_header(&head[..len]).expect("a complete header");
    let mut payload = vec![0u8; header.payload_len as usize];
    read_exact(&mut payload)?;
    Ok((header, payload))
}

/// A server frame as read off the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub first_byte: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.first_byte & 0x0f
    }
    /// For a close frame: the status code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one server frame; server frames must not be masked.
pub fn read_frame(stream: &mut TcpStream) -> RawFrame {
    let (header, payload) = read_frame_with(|buf| stream.read_exact(buf)).expect("a whole frame");
    assert!(!header.masked, "server frames must not be masked");
    RawFrame { first_byte: header.first_byte, payload }
}

/// Reads frames until a close frame; returns its code.
pub fn read_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let frame = read_frame(stream);
        if frame.opcode() == 8 {
            return frame.close_code().expect("close frame with a status code");
        }
    }
}

/// The body of a `GET /metrics` from the metrics listener at `addr`.
pub fn scrape_metrics(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    response.split("\r\n\r\n").nth(1).unwrap().to_string()
}

/// The value of one series (`name{labels}`) in an exposition, 0 if absent.
pub fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A TCP proxy in front of a server whose connections a test can cut, as a network would
/// (Wi-Fi switching, a phone sleeping): [`cut`](Self::cut) drops every open connection and
/// refuses new ones until [`restore`](Self::restore).
pub struct CutProxy {
    pub addr: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl CutProxy {
    pub fn start(server: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let refusing: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (open_in, refusing_in) = (open.clone(), refusing.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if refusing_in.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let Ok(upstream) = TcpStream::connect(server) else { continue };
                let mut sockets = open_in.lock().unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                sockets.extend([client, upstream]);
            }
        });
        Self { addr, open, refusing }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Drops every connection through the proxy, and refuses new ones.
    pub fn cut(&self) {
        self.refusing.store(true, std::sync::atomic::Ordering::SeqCst);
        for socket in self.open.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A fresh directory for a test's files (keys, a data store), removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        // Numbered as well as named: a scenario runs in both modes at once in one test binary,
        // and each run must have a directory of its own.
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wschat-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The directory, as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// Writes `contents` to `name` in the directory; returns its path as an argument.
    pub fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

/// The directory's path, for `join` and wherever a `&Path` is wanted.
impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seconds since the Unix epoch, for token claims.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A sign-in token (JWT) with `claims`, signed HS256 with `secret` (the server's --jwt-secret).
pub fn hs256(secret: &[u8], claims: serde_json::Value) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

/// A chat client in JSON mode (`wschat.json`) at `query` (e.g. `?nick=bob&room=dev`).
#[track_caller]
pub fn json_client(server: &TestServer, query: &str) -> Client {
    let mut request = server.url(&format!("/{query}")).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("wschat.json"));
    let (ws, response) = tungstenite::client(request, server.tcp()).expect("websocket handshake");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap()),
        Some("wschat.json"),
        "the subprotocol is selected"
    );
    ws
}

/// The next JSON object.
#[track_caller]
pub fn recv_json(ws: &mut Client) -> Value {
    let text = recv_text(ws);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A JSON client at `query`, past its welcome and its (empty or not) replay.
pub fn joined(server: &TestServer, query: &str) -> Client {
    let mut ws = json_client(server, query);
    recv_through(&mut ws, "replayed");
    ws
}

/// Reads objects until one of type `kind`; returns it and everything of type `message` before
/// it. Bounded as a whole, like [`recv_until`].
#[track_caller]
pub fn recv_through(ws: &mut Client, kind: &str) -> (Vec<Value>, Value) {
    let deadline = Instant::now() + WAIT;
    let (mut messages, mut other) = (Vec::new(), Vec::new());
    while let Some(message) = recv_by(ws, deadline) {
        let Message::Text(text) = message else {
            other.push(format!("{message:?}"));
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        if value["type"] == kind {
            return (messages, value);
        }
        if value["type"] == "message" {
            messages.push(value);
        } else {
            other.push(text.to_string());
        }
    }
    panic!("no {kind:?} within {WAIT:?}; messages before: {messages:#?}; other: {other:#?}")
}

pub fn texts(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["text"].as_str().unwrap()).collect()
}

/// A TLS client config (ring, safe defaults) trusting only `root`.
pub fn tls_client_trusting(root: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
