//! The server over TLS (`--tls-cert`, `--tls-key`) against real TLS clients: rustls from the
//! test and the `wschat-client` binary, with a CA and certificates made at test time (rcgen).
//! The page over https, chat over wss, plain requests to the TLS port, a client that stalls in
//! the TLS handshake, certificate reload on SIGHUP, and the start-up errors for bad files.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Message, WebSocket};

use common::*;

/// A CA of our own and a server certificate it signed, for `localhost` and 127.0.0.1 unless
/// other names are asked for.
struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    leaf: CertificateDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Self {
        Self::for_names(name, &["localhost", "127.0.0.1"])
    }

    /// A CA, and a server certificate it signed for `names` (DNS names or IP addresses) only.
    fn for_names(name: &str, names: &[&str]) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, format!("wschat test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let leaf = params.signed_by(&key, &ca).unwrap();
        Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
            leaf: leaf.der().clone(),
        }
    }

    /// Writes the certificate and key where the server will read them.
    fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// A TLS client config trusting only this CA.
    fn client(&self) -> Arc<ClientConfig> {
        tls_client_trusting(self.ca.clone())
    }
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("tls-{name}"))
}

/// A server speaking TLS with `pki`'s certificate.
fn tls_server(pki: &Pki, name: &str, flags: &[&str]) -> (TestServer, TempDir) {
    let dir = temp_dir(name);
    let (cert, key) = pki.write_to(&dir);
    let mut args = vec!["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    args.extend_from_slice(flags);
    let args: Vec<String> = args.into_iter().map(String::from).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (TestServer::start(&args), dir)
}

type TlsSocket = StreamOwned<ClientConnection, TcpStream>;

fn tls_connect(server: &TestServer, config: Arc<ClientConfig>) -> std::io::Result<TlsSocket> {
    let tcp = TcpStream::connect(server.addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp);
    // Complete the handshake now, so a refused certificate shows here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

fn wss_client(server: &TestServer, pki: &Pki, path: &str) -> WebSocket<TlsSocket> {
    let tls = tls_connect(server, pki.client()).expect("TLS handshake");
    let url = format!("wss://localhost:{}{path}", server.addr.port());
    let (ws, _) = tungstenite::client(url, tls).expect("WebSocket handshake over TLS");
    ws
}

fn next_text<S: Read + Write>(ws: &mut WebSocket<S>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return text.to_string(),
            Message::Binary(_) => return "<binary>".into(),
            _ => continue,
        }
    }
}

fn text_until<S: Read + Write>(ws: &mut WebSocket<S>, wanted: &str) -> String {
    loop {
        let text = next_text(ws);
        if text.contains(wanted) {
            return text;
        }
    }
}

#[test]
fn the_logged_url_names_a_host_the_certificate_covers() {
    // A certificate for localhost alone: https://127.0.0.1/ would fail in every browser.
    let pki = Pki::for_names("url", &["localhost"]);
    let (server, _dir) = tls_server(&pki, "url", &[]);
    let url = format!("open https://localhost:{}/ in a browser", server.addr.port());
    server.wait_for_log(&url);
    drop(server);
    let pki = Pki::for_names("url-none", &["chat.example.com"]);
    let (server, _dir) = tls_server(&pki, "url-none", &[]);
    server.wait_for_log("open https://chat.example.com:");
}

#[test]
fn the_page_is_served_over_https_with_hsts() {
    let pki = Pki::new("page");
    let (server, _dir) = tls_server(&pki, "page", &[]);
    let mut tls = tls_connect(&server, pki.client()).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), None, "ALPN only when the client offers it");
    write!(tls, "GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", server.addr.port()).unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Strict-Transport-Security: max-age="), "{response}");
    assert!(response.contains("<title>wschat</title>"));
    assert!(
        server.log().iter().any(|l| l.contains("open https://127.0.0.1:")),
        "the log names the https URL"
    );
}

#[test]
fn alpn_offers_http_1_1() {
    let pki = Pki::new("alpn");
    let (server, _dir) = tls_server(&pki, "alpn", &[]);
    let mut config = (*pki.client()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = tls_connect(&server, Arc::new(config)).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn two_clients_chat_over_wss_and_the_close_is_clean() {
    let pki = Pki::new("chat");
    let (server, _dir) = tls_server(&pki, "chat", &[]);
    let mut alice = wss_client(&server, &pki, "/?nick=alice");
    let mut bob = wss_client(&server, &pki, "/?nick=bob");
    text_until(&mut alice, "bob joined lobby");
    alice.send(Message::text("hello over TLS")).unwrap();
    assert_eq!(text_until(&mut bob, "hello"), "alice: hello over TLS");
    // Large messages cross many TLS records in both directions.
    let big = "x".repeat(60_000);
    bob.send(Message::text(big.clone())).unwrap();
    assert_eq!(text_until(&mut alice, "xxxx"), format!("bob: {big}"));
    alice.send(Message::text("/quit bye")).unwrap();
    loop {
        match alice.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1000);
                let _ = alice.flush(); // our reply to the close
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    // The server ends the TLS session with close_notify: the stream reaches a clean EOF.
    let mut rest = Vec::new();
    let tls = alice.get_mut();
    let end = tls.read_to_end(&mut rest);
    assert!(end.is_ok(), "no close_notify before the TCP close: {end:?}");
}

#[test]
fn wschat_client_chats_over_wss_with_a_private_ca() {
    let pki = Pki::new("client");
    let (server, dir) = tls_server(&pki, "client", &[]);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let mut watcher = wss_client(&server, &pki, "/?nick=watcher");
    let url = format!("wss://localhost:{}/", server.addr.port());
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-client"))
        .args([&url, "--nick", "carol", "--ca-file", ca_file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"hi from the terminal client\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("carol: hi from the terminal client"), "{stdout}");
    assert_eq!(text_until(&mut watcher, "carol:"), "carol: hi from the terminal client");

    // Without the CA the certificate is not trusted, and the client says so.
    let refused =
        Command::new(env!("CARGO_BIN_EXE_wschat-client")).arg(&url).stdin(Stdio::null()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate not trusted; pass --ca-file with your CA"), "{stderr}");
}

/// Runs `wschat-client URL ARGS...` with no input; its exit code and stderr.
fn client_fails(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-client"))
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn tls_failures_say_what_to_do() {
    // wss:// to a plain server: it answers the TLS hello in plain HTTP.
    let plain = TestServer::start(&[]);
    let (code, stderr) = client_fails(&format!("wss://localhost:{}/", plain.addr.port()), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the server did not answer TLS; is it ws://?"), "{stderr}");

    // A certificate from a CA the client was not given.
    let pki = Pki::new("unknown-ca");
    let (server, _dir) = tls_server(&pki, "unknown-ca", &[]);
    let (code, stderr) = client_fails(&format!("wss://localhost:{}/", server.addr.port()), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("certificate not trusted; pass --ca-file with your CA"), "{stderr}");

    // A trusted certificate for other names than the one connected by.
    let pki = Pki::for_names("other-names", &["chat.example.com", "10.9.8.7"]);
    let (server, dir) = tls_server(&pki, "other-names", &[]);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let url = format!("wss://localhost:{}/", server.addr.port());
    let (code, stderr) = client_fails(&url, &["--ca-file", ca_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the certificate is not for localhost: it covers chat.example.com, 10.9.8.7"),
        "{stderr}"
    );
}

#[test]
fn wschat_bench_says_what_to_do_about_an_untrusted_certificate() {
    let pki = Pki::new("bench-unknown-ca");
    let (server, _dir) = tls_server(&pki, "bench-unknown-ca", &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(format!("wss://localhost:{}/", server.addr.port()))
        .args(["--clients", "2", "--duration", "1s", "--warmup", "0s", "--connect-timeout", "10s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("certificate not trusted; pass --ca-file with your CA"), "{stderr}");
}

#[test]
fn plain_http_and_ws_to_the_tls_port_get_a_readable_400() {
    let pki = Pki::new("plain");
    let (server, _dir) = tls_server(&pki, "plain", &["--metrics", "127.0.0.1:0"]);
    let reply = http_exchange(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");
    assert!(reply.ends_with("this port speaks TLS only: use https:// or wss://\n"), "{reply}");
    let upgrade = upgrade_request(&server, "/");
    let reply = http_exchange(&server, &upgrade);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");
    // The server carries on serving TLS clients.
    let mut ok = wss_client(&server, &pki, "/?nick=after");
    text_until(&mut ok, "welcome");
    let counted = metric(
        &scrape_metrics(&server.metrics_addr()),
        "wschat_connections_rejected_total{reason=\"tls_error\"}",
    );
    assert_eq!(counted, 2.0, "both plain requests counted as TLS errors");
}

#[test]
fn a_client_that_stalls_in_the_tls_handshake_is_dropped_at_the_handshake_timeout() {
    let pki = Pki::new("stall");
    let (server, _dir) = tls_server(&pki, "stall", &["--handshake-timeout", "300ms"]);
    // One opens TCP and says nothing; another sends half a ClientHello.
    let mut silent = server.tcp();
    let mut half = server.tcp();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
    for stream in [&mut silent, &mut half] {
        expect_eof(stream);
    }
    // Meanwhile, and afterwards, a real client is served.
    let mut ok = wss_client(&server, &pki, "/?nick=patient");
    text_until(&mut ok, "welcome");
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let first = Pki::new("first");
    let second = Pki::new("second");
    let (server, dir) = tls_server(&first, "reload", &[]);
    let mut open = wss_client(&server, &first, "/?nick=early");
    text_until(&mut open, "welcome");

    // A file that cannot be used keeps the current certificate.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    server.signal("HUP");
    server.wait_for_log("keeping the current TLS certificate");
    let still = tls_connect(&server, first.client()).expect("the first certificate is still served");
    assert_eq!(still.conn.peer_certificates().unwrap()[0], first.leaf);

    second.write_to(&dir);
    server.signal("HUP");
    server.wait_for_log("TLS certificate reloaded");
    let fresh = tls_connect(&server, second.client()).expect("the new certificate is served");
    assert_eq!(fresh.conn.peer_certificates().unwrap()[0], second.leaf);
    assert!(tls_connect(&server, first.client()).is_err(), "the old certificate is no longer served");

    // The connection opened before the reload is untouched.
    open.send(Message::text("/who")).unwrap();
    assert!(text_until(&mut open, "*** in lobby").contains("early"));
}

#[test]
fn bad_certificate_files_stop_the_server_at_start_naming_the_file() {
    let pki = Pki::new("bad");
    let other = Pki::new("other");
    let dir = temp_dir("bad");
    let (cert, key) = pki.write_to(&dir);
    let other_key = dir.join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let missing = dir.join("missing.pem");
    let cases = [
        (missing.as_path(), key.as_path(), "missing.pem"),
        (cert.as_path(), missing.as_path(), "missing.pem"),
        (key.as_path(), key.as_path(), "no certificate"),
        (cert.as_path(), other_key.as_path(), "does not match"),
    ];
    for (cert, key, expected) in cases {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_wschat-server"))
            .args(["127.0.0.1:0", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let only_cert = Command::new(env!("CARGO_BIN_EXE_wschat-server"))
        .args(["127.0.0.1:0", "--tls-cert", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(only_cert.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&only_cert.stderr).contains("--tls-key"));
}

#[test]
fn wschat_bench_loads_a_tls_server() {
    let pki = Pki::new("bench");
    let (server, dir) = tls_server(&pki, "bench", &[]);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let url = format!("wss://localhost:{}/", server.addr.port());
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .args([&url, "--ca-file", ca_file.to_str().unwrap(), "--clients", "20", "--senders", "2"])
        .args(["--duration", "500ms", "--warmup", "200ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("connect: ok=20 failed=0"), "{stdout}");
    assert!(stdout.contains(" lost=0 "), "{stdout}");
}

#[test]
fn a_tls_reader_that_stops_reading_is_cut_off_like_a_plain_one() {
    let pki = Pki::new("stalled");
    let (server, _dir) =
        tls_server(&pki, "stalled", &["--max-outbound", "70KiB", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_addr();
    let mut talker = wss_client(&server, &pki, "/?nick=talker");
    let _stalled = wss_client(&server, &pki, "/?nick=stalled");
    text_until(&mut talker, "stalled joined");
    let line = "x".repeat(60_000);
    for _ in 0..300 {
        talker.send(Message::text(line.clone())).unwrap();
        text_until(&mut talker, "talker: xxx");
        if metric(&scrape_metrics(&metrics), "wschat_slow_readers_cut_off_total") >= 1.0 {
            // The talker, which reads, is still served.
            talker.send(Message::text("/who")).unwrap();
            assert!(text_until(&mut talker, "*** in lobby").contains("talker"));
            return;
        }
    }
    panic!("the stalled TLS reader was never cut off");
}

#[test]
fn tls_1_2_and_1_3_are_both_served() {
    let pki = Pki::new("versions");
    let (server, _dir) = tls_server(&pki, "versions", &[]);
    for (version, wanted) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = tls_connect(&server, Arc::new(config)).expect("handshake");
        assert_eq!(tls.conn.protocol_version(), Some(wanted));
    }
}

#[test]
fn a_peer_that_stops_reading_becomes_would_block_and_nothing_written_is_lost() {
    use std::io::ErrorKind;
    use wschat::tls::TlsStream;

    let pki = Pki::new("stream");
    let dir = temp_dir("stream");
    let (cert, key) = pki.write_to(&dir);
    let server_config = wschat::tls::ServerTls::load(&cert, &key).unwrap().config;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client_config = pki.client();
    // The client completes its handshake, then reads nothing until told to.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let tcp = TcpStream::connect(addr).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = StreamOwned::new(ClientConnection::new(client_config, name).unwrap(), tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        wait.recv().unwrap();
        let mut received = Vec::new();
        let _ = tls.read_to_end(&mut received);
        received.len()
    });
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let session = rustls::ServerConnection::new(server_config).unwrap();
    let mut server = TlsStream::server(mio::net::TcpStream::from_std(tcp), session);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.tls.is_handshaking() {
        let mut buf = [0u8; 64];
        match server.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            other => panic!("during the handshake: {other:?}"),
        }
        let _ = server.flush();
        assert!(Instant::now() < deadline, "no handshake");
    }
    // Write until the socket and rustls's own limit are full: that must end in WouldBlock.
    let chunk = [7u8; 1024];
    let mut accepted = 0;
    loop {
        match server.write(&chunk) {
            Ok(n) => accepted += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(accepted < 64 << 20, "writes never blocked: rustls buffered without limit");
    }
    assert!(accepted > 0);
    go.send(()).unwrap();
    // Once the client reads, every accepted byte arrives.
    loop {
        match server.flush() {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("flush failed: {e}"),
        }
        assert!(Instant::now() < deadline, "never drained");
    }
    server.close_notify();
    let _ = server.flush();
    drop(server);
    assert_eq!(client.join().unwrap(), accepted, "bytes lost or invented");
}
