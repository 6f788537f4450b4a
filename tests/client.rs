//! The terminal client as scripts use it: the real `wschat-client` binary with piped stdin and
//! stdout, against the real server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// A running `wschat-client` with its output read line by line on background threads.
struct ClientProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen_stdout: Vec<String>,
    seen_stderr: Vec<String>,
}

fn lines_of(source: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl ClientProcess {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wschat-client"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wschat-client");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Self { stdin: child.stdin.take(), child, stdout, stderr, seen_stdout: vec![], seen_stderr: vec![] }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to client stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line matching `wanted`; panics with everything seen at the deadline.
    fn expect_stdout(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        while let Ok(line) = self.stdout.recv_timeout(until.saturating_duration_since(Instant::now())) {
            self.seen_stdout.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
        panic!("expected line not printed; stdout so far: {:#?}", self.seen_stdout);
    }

    /// Waits for the process to exit; returns its status and all of its stderr.
    fn wait(&mut self) -> (ExitStatus, String) {
        self.close_stdin();
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < until, "wschat-client did not exit; stderr: {:?}", self.seen_stderr);
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe closes with the process, so this ends.
        while let Ok(line) = self.stderr.recv_timeout(DEADLINE) {
            self.seen_stderr.push(line);
        }
        while let Ok(line) = self.stdout.recv_timeout(DEADLINE) {
            self.seen_stdout.push(line);
        }
        (status, self.seen_stderr.join("\n"))
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn two_clients_chat_through_pipes() {
    let server = TestServer::start(&[]);
    let mut ann = ClientProcess::start(&[&server.url("/"), "--nick", "ann"]);
    ann.expect_stdout(|l| l == "*** welcome, you are ann in lobby; type /help for commands");
    let mut bob = ClientProcess::start(&[&server.url("/"), "--nick", "bob"]);
    bob.expect_stdout(|l| l.starts_with("*** welcome, you are bob"));
    ann.expect_stdout(|l| l == "*** bob joined lobby");

    bob.type_line("hello ann");
    ann.expect_stdout(|l| l == "bob: hello ann");
    ann.type_line("/msg bob psst");
    bob.expect_stdout(|l| l == "[PM from ann] psst");
    ann.expect_stdout(|l| l == "[PM to bob] psst");

    // End of input: everything sent is acknowledged, then a clean close and status 0.
    bob.type_line("bye now");
    let (status, stderr) = bob.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("connection closed: 1000"), "{stderr}");
    ann.expect_stdout(|l| l == "bob: bye now");
    ann.expect_stdout(|l| l == "*** bob left lobby (closed)");
}

#[test]
fn piped_lines_are_all_delivered_before_the_close() {
    let server = TestServer::start(&[]);
    let mut watcher = server.chat_client("watcher");
    let mut script = ClientProcess::start(&[&server.url("/"), "--nick", "script"]);
    for i in 0..200 {
        script.type_line(&format!("line {i}"));
    }
    let (status, stderr) = script.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    // The server echoes each line to its sender, and every one came back before the close.
    let echoed = script.seen_stdout.iter().filter(|l| l.starts_with("script: line ")).count();
    assert_eq!(echoed, 200, "stdout: {:?}", script.seen_stdout);
    recv_until(&mut watcher, |t| t == "script: line 199");
}

#[test]
fn quit_shows_the_servers_close_and_exits_zero() {
    let server = TestServer::start(&[]);
    let mut client = ClientProcess::start(&[&server.url("/"), "--nick", "leaver"]);
    client.expect_stdout(|l| l.starts_with("*** welcome"));
    client.type_line("/quit see you");
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("connection closed: 1000 (see you)"), "{stderr}");
}

#[test]
fn failing_to_connect_exits_one() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let mut client = ClientProcess::start(&[&url]);
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn a_refused_handshake_exits_one_with_the_status() {
    let server = TestServer::start(&[]);
    let mut client = ClientProcess::start(&[&server.url("/no-such-path")]);
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("404 Not Found"), "{stderr}");
}

#[test]
fn an_address_that_is_not_a_websocket_one_is_a_usage_error() {
    let server = TestServer::start(&[]);
    for (url, why) in [
        (format!("http://{}/", server.addr), "http:// is not a WebSocket address"),
        (format!("{}:port", server.addr.ip()), "\"port\" is not a port"),
    ] {
        let mut client = ClientProcess::start(&[&url]);
        let (status, stderr) = client.wait();
        assert_eq!(status.code(), Some(2), "{url}: stderr: {stderr}");
        assert!(stderr.contains(why) && stderr.contains("HOST:PORT or HOST"), "{url}: {stderr}");
    }
}

#[test]
fn a_binary_file_that_cannot_be_read_is_a_usage_error() {
    let mut client = ClientProcess::start(&["ws://127.0.0.1:1/", "--binary", "/nonexistent/photo.jpg"]);
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot read /nonexistent/photo.jpg"), "{stderr}");
}

#[test]
fn binary_file_is_sent_as_one_binary_message() {
    let server = TestServer::start(&[]);
    let mut peer = server.chat_client("peer");
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = std::env::temp_dir().join(format!("wschat-client-test-{}.bin", std::process::id()));
    std::fs::write(&path, &data).expect("write temp file");
    let mut sender =
        ClientProcess::start(&[&server.url("/?nick=sender"), "--binary", path.to_str().unwrap()]);
    let received = loop {
        match recv(&mut peer) {
            tungstenite::Message::Binary(bytes) => break bytes,
            _ => continue,
        }
    };
    assert_eq!(received.as_ref(), data.as_slice());
    // The sender is in the room too, so it is relayed back and shown with who sent it (the
    // line the server sends before it is folded into this one).
    sender.expect_stdout(|l| l == "[binary, 5000 bytes from sender]");
    assert!(!sender.seen_stdout.iter().any(|l| l.starts_with("*** binary")), "{:?}", sender.seen_stdout);
    let (status, _) = sender.wait();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_file(path);
}

#[test]
fn an_abnormal_close_exits_one_and_shows_the_code() {
    let server = TestServer::start(&["--max-message-size", "1KiB", "--max-outbound", "64KiB"]);
    let path = std::env::temp_dir().join(format!("wschat-client-big-{}.bin", std::process::id()));
    std::fs::write(&path, vec![b'x'; 4096]).expect("write temp file");
    let mut client = ClientProcess::start(&[&server.url("/"), "--binary", path.to_str().unwrap()]);
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("connection closed by the server: 1009"), "{stderr}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn reconnect_retries_with_backoff_until_input_ends() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let mut client = ClientProcess::start(&[&url, "--reconnect"]);
    let until = Instant::now() + DEADLINE;
    let mut retries = 0;
    while retries < 2 {
        let line = client.stderr.recv_timeout(until.saturating_duration_since(Instant::now()));
        let line = line.expect("client reports its reconnection attempts");
        if line.starts_with("reconnecting in ") {
            retries += 1;
        }
        client.seen_stderr.push(line);
    }
    // Ending the input while disconnected ends the client.
    let (status, stderr) = client.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("(attempt 2)"), "{stderr}");
}

#[test]
fn reconnect_comes_back_after_the_server_closes_abnormally() {
    let mut server = TestServer::start(&[]);
    let url = server.url("/");
    let mut client = ClientProcess::start(&[&url, "--nick", "stayer", "--reconnect"]);
    client.expect_stdout(|l| l.starts_with("*** welcome, you are stayer"));
    // A shutdown closes with 1001, which is not a normal end: the client tries again.
    server.signal("TERM");
    server.wait_exit();
    let until = Instant::now() + DEADLINE;
    loop {
        let line = client.stderr.recv_timeout(until.saturating_duration_since(Instant::now()));
        let line = line.expect("client reports the close and its retry");
        client.seen_stderr.push(line.clone());
        if line.starts_with("reconnecting in ") {
            break;
        }
    }
    let stderr = client.seen_stderr.join("\n");
    assert!(stderr.contains("connection closed by the server: 1001 (server shutting down)"), "{stderr}");
}

#[test]
fn ctrl_c_before_connecting_ends_with_sigint_which_the_shell_reports_as_130() {
    use std::os::unix::process::ExitStatusExt;
    // A listener that never accepts: TCP connects, the WebSocket handshake never completes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let mut client = ClientProcess::start(&[&url, "--connect-timeout", "30s"]);
    // Wait (bounded) until it has connected and is waiting for the handshake's answer.
    silent.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let _held = loop {
        match silent.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("the client never connected: {e}"),
        }
    };
    let pid = client.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let (status, _) = client.wait();
    assert_eq!(status.signal(), Some(2), "{status:?}: SIGINT, which shells report as 130");
}

/// Alice says `line` and waits for it to come back (so it is in the room's history).
fn say(alice: &mut common::Client, line: &str) {
    common::send(alice, line);
    common::recv_until(alice, |t| t == format!("alice: {line}"));
}

#[test]
fn a_reconnecting_client_shows_what_it_missed_once_and_nothing_twice() {
    let server = TestServer::start(&[]);
    let proxy = common::CutProxy::start(server.addr);
    let mut bob = ClientProcess::start(&[&proxy.url("/"), "--nick", "bob", "--reconnect"]);
    bob.expect_stdout(|l| l.starts_with("*** welcome, you are bob"));
    let mut alice = server.chat_client("alice");
    say(&mut alice, "before");
    bob.expect_stdout(|l| l == "alice: before");

    proxy.cut(); // the network goes away; bob keeps trying to come back
    common::recv_until(&mut alice, |t| t.starts_with("*** bob left lobby"));
    for line in ["while away 1", "while away 2", "while away 3"] {
        say(&mut alice, line);
    }
    proxy.restore();
    bob.expect_stdout(|l| l == "alice: while away 1");
    bob.expect_stdout(|l| l == "alice: while away 2");
    bob.expect_stdout(|l| l == "alice: while away 3");
    say(&mut alice, "live again");
    bob.expect_stdout(|l| l == "alice: live again");
    let (_, stderr) = bob.wait();
    assert_eq!(bob.seen_stdout.iter().filter(|l| *l == "alice: before").count(), 1, "{:#?}", bob.seen_stdout);
    assert!(stderr.contains("&room=lobby&since="), "it resumed from the last id it saw: {stderr}");
    assert!(!stderr.contains("missed"), "{stderr}");
}

#[test]
fn a_reconnecting_client_says_when_messages_were_missed() {
    let server = TestServer::start(&["--history", "2"]);
    let proxy = common::CutProxy::start(server.addr);
    let mut bob = ClientProcess::start(&[&proxy.url("/"), "--nick", "bob", "--reconnect"]);
    bob.expect_stdout(|l| l.starts_with("*** welcome, you are bob"));
    let mut alice = server.chat_client("alice");
    say(&mut alice, "seen");
    bob.expect_stdout(|l| l == "alice: seen");
    proxy.cut();
    common::recv_until(&mut alice, |t| t.starts_with("*** bob left lobby"));
    for line in ["gone 1", "gone 2", "gone 3"] {
        say(&mut alice, line);
    }
    proxy.restore();
    bob.expect_stdout(|l| l == "alice: gone 3");
    let until = Instant::now() + DEADLINE;
    loop {
        let line = bob.stderr.recv_timeout(until.saturating_duration_since(Instant::now()));
        let line = line.expect("the client reports the gap");
        if line.contains("some messages in lobby were missed") {
            break;
        }
    }
}

#[test]
fn token_signs_in_from_a_file_or_stdin_and_is_never_shown() {
    let dir = TempDir::new("client-token");
    let secret = b"the client test's secret, 32 bytes";
    let server = TestServer::start(&["--jwt-secret", &dir.file("secret", secret)]);
    let token = |sub: &str| hs256(secret, serde_json::json!({"sub": sub, "exp": unix_now() + 600}));
    let file = dir.file("token", format!("{}\n", token("gus")).as_bytes());
    let mut gus = ClientProcess::start(&[&server.url("/"), "--token", &file]);
    gus.expect_stdout(|l| l.starts_with("*** welcome, you are gus in lobby"));
    let (_, stderr) = gus.wait();
    assert!(stderr.contains("token=…") && !stderr.contains(&token("gus")[..40]), "{stderr}");

    let mut hal = ClientProcess::start(&[&server.url("/"), "--token", "-"]);
    hal.type_line(&token("hal"));
    hal.type_line("hello from a signed-in pipe");
    hal.expect_stdout(|l| l == "hal: hello from a signed-in pipe");
    let (status, _) = hal.wait();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_kicked_client_does_not_come_back_even_with_reconnect() {
    let dir = TempDir::new("client-kick");
    let secret = b"the kick test's secret, 32 bytes..";
    let server = TestServer::start(&["--jwt-secret", &dir.file("secret", secret)]);
    let now = unix_now();
    let token = |claims: serde_json::Value| hs256(secret, claims);
    let ivy_token = dir.file("ivy", token(serde_json::json!({"sub": "ivy", "exp": now + 600})).as_bytes());
    let mut ivy = ClientProcess::start(&[&server.url("/"), "--token", &ivy_token, "--reconnect"]);
    ivy.expect_stdout(|l| l.starts_with("*** welcome, you are ivy"));
    let admin = token(serde_json::json!({"sub": "root", "exp": now + 600, "role": "admin"}));
    let mut root = server.connect(&format!("/?token={admin}"));
    common::recv_until(&mut root, |t| t.starts_with("*** welcome"));
    common::send(&mut root, "/kick ivy enough");
    // The process ends by itself (input still open): no reconnection.
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = ivy.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "the kicked client is still running");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (_, stderr) = ivy.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("4000 (kicked by root: enough)") && !stderr.contains("reconnecting in"),
        "{stderr}"
    );
}

#[test]
fn piped_lines_and_commands_come_back_in_the_order_sent_in_a_cluster() {
    let test = "piped_lines_and_commands_come_back_in_the_order_sent_in_a_cluster";
    let Some(redis) = common::redis::RedisServer::start(test) else { return };
    let url = redis.url();
    let (a, b) = (TestServer::start(&["--redis", &url]), TestServer::start(&["--redis", &url]));
    a.wait_for_log("connected to Redis");
    b.wait_for_log("connected to Redis");
    let mut ann = b.chat_client("ann");
    recv_until(&mut ann, |t| t == "*** ann joined lobby");
    let mut bob = ClientProcess::start(&[&a.url("/"), "--nick", "bob"]);
    for line in ["hi", "/who", "/rooms", "bye"] {
        bob.type_line(line);
    }
    let (status, stderr) = bob.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    // Everything was processed before the client closed (the server reads a client's ping
    // only once what it sent before has come back through Redis), and in the order sent.
    let out = &bob.seen_stdout;
    let at = |wanted: &str| {
        out.iter().position(|l| l.starts_with(wanted)).unwrap_or_else(|| panic!("{wanted}: {out:#?}"))
    };
    let order = [
        at("*** bob joined lobby"),
        at("bob: hi"),
        at("*** in lobby (2): ann, bob"),
        at("*** rooms: lobby (2)"),
        at("bob: bye"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in the order sent: {out:#?}");
    recv_until(&mut ann, |t| t == "bob: bye");
}

/// `/ids on` shows each message's id (a local setting: nothing is sent), `/history ID` pages
/// back between the markers a text client gets, and resuming later is not thrown back to the
/// older messages a page showed.
#[test]
fn ids_and_history_in_the_terminal_client() {
    let server = TestServer::start(&[]);
    let mut ann = ClientProcess::start(&[&server.url("/"), "--nick", "ann"]);
    ann.expect_stdout(|l| l.starts_with("*** welcome, you are ann"));
    ann.type_line("/ids on");
    for i in 1..=3 {
        ann.type_line(&format!("line {i}"));
    }
    let third = ann.expect_stdout(|l| l.ends_with("] ann: line 3"));
    let id = third.trim_start_matches('[').split(']').next().unwrap().to_string();
    assert!(id.ends_with(":3"), "{third}");
    ann.type_line(&format!("/history {id}"));
    ann.expect_stdout(|l| l == "*** earlier messages in lobby:");
    ann.expect_stdout(|l| l.ends_with("] ann: line 1"));
    ann.expect_stdout(|l| l.ends_with("] ann: line 2"));
    ann.expect_stdout(|l| l == "*** end of earlier messages");
    ann.type_line("/ids off");
    ann.type_line("line 4");
    ann.expect_stdout(|l| l == "ann: line 4");
    let (status, stderr) = ann.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("message ids shown"), "{stderr}");
}
