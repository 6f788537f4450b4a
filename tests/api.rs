//! `--api ADDR --api-key-file FILE` against the real binary, over real sockets: the HTTP API's
//! errors (every status it gives), its keys (checked, reloaded on SIGHUP, never logged), its
//! bounds (an idle API client never delays the chat), and each endpoint, in one process and in
//! a cluster of two (an API on one process answers for both).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::protocol::frame::coding::CloseCode;

use common::*;

const KEY: &str = "test-key-0123456789abcdef";
const OTHER_KEY: &str = "second-key-fedcba9876543210";

/// A key file holding `KEY`, in a directory removed when dropped.
fn key_file(name: &str, keys: &str) -> (TempDir, String) {
    let dir = TempDir::new(name);
    let file = dir.file("keys", format!("# the test's keys\n\n{keys}\n").as_bytes());
    (dir, file)
}

/// The API address (`HOST:PORT`) of a process, from its start-up log.
fn api_addr(server: &TestServer) -> String {
    let line = server.wait_for_log("HTTP API at http://");
    line.split("HTTP API at http://").nth(1).unwrap().trim_end_matches("/api/").to_string()
}

/// A server with the API on a port of its own (key `KEY`); returns it, its API address and
/// the key file's directory.
fn server_with_api(name: &str, flags: &[&str]) -> (TestServer, String, TempDir) {
    let (dir, file) = key_file(name, KEY);
    let mut all = vec!["--api", "127.0.0.1:0", "--api-key-file", file.as_str()];
    all.extend_from_slice(flags);
    let server = TestServer::start(&all);
    let addr = api_addr(&server);
    (server, addr, dir)
}

/// A reply: status, head (lower-cased header names) and body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Reads one reply (by its Content-Length) from `stream`.
fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the reply ended early: {bytes:?}");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().parse().unwrap())
        })
        .expect("Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    Reply { status, head: head.to_ascii_lowercase(), body: String::from_utf8(body).unwrap() }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// One request with `key` (if any) on a connection of its own.
fn request(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Reply {
    let mut stream = connect(addr);
    let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let length = body.map(|b| format!("Content-Length: {}\r\n", b.len())).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: api\r\n{auth}{length}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.unwrap_or("").as_bytes()).unwrap();
    read_reply(&mut stream)
}

fn get(addr: &str, path: &str) -> Reply {
    request(addr, "GET", path, Some(KEY), None)
}

/// Asks `path` until `done` is happy with the JSON (presence and counts cross Redis a little
/// after the join is seen), within the test's deadline.
#[track_caller]
fn get_until(addr: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = get(addr, path);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        if done(&json) {
            return json;
        }
        assert!(Instant::now() < deadline, "{path} never answered as expected; last: {json}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_error_is_json_with_its_status() {
    let (_server, addr, _dir) = server_with_api("api-errors", &[]);
    let no_key = request(&addr, "GET", "/api/stats", None, None);
    assert_eq!(no_key.status, 401);
    assert!(no_key.head.contains("www-authenticate: bearer\r\n"), "{}", no_key.head);
    assert!(no_key.json()["error"].as_str().unwrap().contains("API key"));
    let wrong = request(&addr, "GET", "/api/stats", Some("wrong-key-but-long-enough"), None);
    assert_eq!((wrong.status, wrong.head.contains("www-authenticate: bearer")), (401, true));
    assert_eq!(request(&addr, "GET", "/api/nothing", None, None).status, 401, "no key, no paths");
    assert_eq!(get(&addr, "/api/nothing").status, 404);
    assert_eq!(get(&addr, "/").status, 404);
    let post = request(&addr, "POST", "/api/rooms", Some(KEY), Some("{}"));
    assert_eq!(post.status, 405);
    assert!(post.head.contains("allow: get\r\n"), "{}", post.head);
    let missing = get(&addr, "/api/presence");
    assert_eq!((missing.status, missing.json()["error"].as_str()), (400, Some("room: missing")));
    assert_eq!(get(&addr, "/api/presence?room=%zz").status, 400);
    // A POST without Content-Length, and a body over 64 KiB: refused from the head alone.
    let mut stream = connect(&addr);
    stream
        .write_all(format!("POST /api/rooms HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_reply(&mut stream).status, 411);
    let mut stream = connect(&addr);
    let head =
        format!("POST /api/rooms HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 65537\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let too_large = read_reply(&mut stream);
    assert_eq!(too_large.status, 413);
    for reply in [no_key, post, too_large] {
        assert!(reply.head.contains("content-type: application/json\r\n"), "{}", reply.head);
    }
}

/// Requests one after the other on one connection, the first two in one write: each answered
/// in turn (in a cluster, each through Redis, the second asked as soon as the first is answered).
fn a_connection_is_kept_alive_between_requests(mode: Mode) {
    let (_dir, file) = key_file("api-keepalive", KEY);
    let chat = Chat::start(mode, &["--api", "127.0.0.1:0", "--api-key-file", &file]);
    let mut stream = connect(&api_addr(chat.process(0)));
    let ask = format!("GET /api/stats HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    let started = Instant::now();
    stream.write_all(format!("{ask}{ask}").as_bytes()).unwrap();
    for _ in 0..2 {
        let reply = read_reply(&mut stream);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.head.contains("connection: keep-alive"), "{}", reply.head);
    }
    stream.write_all(ask.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut stream).json()["connections"], 0);
    // Nothing waited for a timer: the second call went to Redis with the first one's answer.
    assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    let close =
        format!("GET /api/rooms HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n");
    stream.write_all(close.as_bytes()).unwrap();
    assert!(read_reply(&mut stream).head.contains("connection: close"));
    expect_eof(&mut stream);
}
both_modes!(a_connection_is_kept_alive_between_requests(mode));

#[test]
fn the_api_needs_a_key_file_of_good_keys() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_wschat-server")).args(args).output().unwrap();
    let alone = run(&["127.0.0.1:0", "--api", "127.0.0.1:0"]);
    assert_eq!(alone.status.code(), Some(2), "{}", String::from_utf8_lossy(&alone.stderr));
    assert!(String::from_utf8_lossy(&alone.stderr).contains("--api-key-file"));
    let (_dir, file) = key_file("api-bad-keys", "short-key");
    let short = run(&["127.0.0.1:0", "--api", "127.0.0.1:0", "--api-key-file", &file]);
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3") && !stderr.contains("short-key"), "{stderr}");
}

#[test]
fn keys_are_reloaded_on_sighup_and_never_logged() {
    let (server, addr, dir) = server_with_api("api-reload", &["-vv"]);
    assert_eq!(get(&addr, "/api/stats").status, 200);
    assert_eq!(request(&addr, "GET", "/api/stats", Some(OTHER_KEY), None).status, 401);
    dir.file("keys", format!("{OTHER_KEY}\n").as_bytes());
    server.signal("HUP");
    server.wait_for_log("API key(s) reloaded");
    assert_eq!(request(&addr, "GET", "/api/stats", Some(OTHER_KEY), None).status, 200);
    assert_eq!(get(&addr, "/api/stats").status, 401, "the old key is gone");
    // A file that cannot be used keeps the keys in force.
    dir.file("keys", b"too-short\n");
    server.signal("HUP");
    server.wait_for_log("keeping the current API keys");
    assert_eq!(request(&addr, "GET", "/api/stats", Some(OTHER_KEY), None).status, 200);
    let log = server.log().join("\n");
    for secret in [KEY, OTHER_KEY, "too-short"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

#[test]
fn idle_api_clients_never_delay_the_chat_nor_lock_the_api_out() {
    let (server, addr, _dir) = server_with_api("api-idle", &[]);
    // Every slot taken by a connection that sent half a head and went quiet.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = connect(&addr);
            stream.write_all(b"GET /api/stats HTTP/1.1\r\nAuthori").unwrap();
            stream
        })
        .collect();
    let mut clients = server.chat_room(&["alice", "bob"]);
    let started = Instant::now();
    send(&mut clients[0], "still here");
    recv_line(&mut clients[1], "alice: still here");
    assert!(started.elapsed() < Duration::from_secs(1), "the chat waited {:?}", started.elapsed());
    // A real request takes the oldest idle connection's slot.
    assert_eq!(get(&addr, "/api/stats").status, 200);
    drop(idle);
    // A client that sends request after request and never reads a reply: the server reads
    // its next request only once the last reply is taken, so it holds one reply at a time,
    // and the chat and the API's other clients go on.
    let mut greedy = connect(&addr);
    let ask = format!("GET /api/history?room=lobby HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    let pipelined = ask.repeat(20_000);
    greedy.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let _ = greedy.write_all(pipelined.as_bytes()); // Stops when the server stops reading.
    send(&mut clients[0], "and still");
    recv_line(&mut clients[1], "alice: and still");
    assert_eq!(get(&addr, "/api/stats").status, 200);
}

/// `GET /api/stats`, `/api/rooms` and `/api/presence` from either process's API, for members
/// on both.
fn rooms_presence_and_stats_answer_for_every_process(mode: Mode) {
    let (_dir, file) = key_file("api-rooms", KEY);
    let chat = Chat::start(mode, &["--api", "127.0.0.1:0", "--api-key-file", &file]);
    let _lobby = chat.chat_room(&["alice", "bob"]);
    let mut carol = chat.chat_client("carol");
    send(&mut carol, "/join Dev");
    recv_line(&mut carol, "*** carol joined Dev");
    for process in chat.processes() {
        let addr = api_addr(process);
        let rooms = get_until(&addr, "/api/rooms", |json| json["rooms"].as_array().unwrap().len() == 2);
        let expected: Value = serde_json::from_str(
            r#"{"rooms": [{"room": "Dev", "members": 1}, {"room": "lobby", "members": 2}], "total": 2}"#,
        )
        .unwrap();
        assert_eq!(rooms, expected);
        let lobby = get_until(&addr, "/api/presence?room=LOBBY", |json| json["total"] == 2);
        assert_eq!(lobby["members"], serde_json::json!(["alice", "bob"]));
        assert_eq!(lobby["room"], "lobby");
        let dev = get_until(&addr, "/api/presence?room=dev", |json| json["total"] == 1);
        assert_eq!(dev["members"], serde_json::json!(["carol"]));
        let nowhere = get(&addr, "/api/presence?room=nowhere");
        assert_eq!((nowhere.status, nowhere.json()["error"].as_str()), (404, Some("no such room")));
        let stats = get_until(&addr, "/api/stats", |json| json["connections"] == 3);
        assert_eq!(stats["rooms"], 2);
        assert!(stats["messages"].is_u64(), "{stats}");
        assert_eq!(stats["cluster"].as_str(), (mode == Mode::Cluster).then_some("linked"), "{stats}");
    }
}
both_modes!(rooms_presence_and_stats_answer_for_every_process(mode));

fn post(addr: &str, path: &str, body: &str) -> Reply {
    request(addr, "POST", path, Some(KEY), Some(body))
}

/// A `POST` with an `Idempotency-Key`.
fn post_once(addr: &str, path: &str, body: &str, idempotency_key: &str) -> Reply {
    let mut stream = connect(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nIdempotency-Key: {idempotency_key}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    read_reply(&mut stream)
}

/// `POST /api/publish` through process 0's API reaches a text member and a JSON member (in a
/// cluster on the other process), set apart from members' lines, keeps it in the room's
/// history for a later joiner, publishes into a room nobody is in, and an `Idempotency-Key`
/// sent again publishes nothing more.
fn a_published_message_is_seen_live_set_apart_and_kept(mode: Mode) {
    let (_dir, file) = key_file("api-publish", KEY);
    let chat = Chat::start(mode, &["--api", "127.0.0.1:0", "--api-key-file", &file]);
    let (a, b) = (api_addr(chat.process(0)), api_addr(chat.process(1)));
    let mut alice = chat.process(0).chat_client("alice");
    // In the room (in a cluster: its process subscribed) before Bob joins, or his join notice
    // may pass before process 0 hears the room.
    recv_line(&mut alice, "*** alice joined lobby");
    let mut bob = json_client(chat.process(1), "?nick=bob");
    recv_through(&mut bob, "replayed");
    recv_line(&mut alice, "*** bob joined lobby");
    let published =
        post(&a, "/api/publish", r#"{"room": "Lobby", "text": "deploy 1.4 done", "from": "deploybot"}"#);
    assert_eq!(published.status, 200, "{}", published.body);
    let id = published.json()["id"].as_str().unwrap().to_string();
    recv_line(&mut alice, "[deploybot] deploy 1.4 done");
    let (_, message) = recv_through(&mut bob, "message");
    assert_eq!(
        (
            message["from"].as_str(),
            message["text"].as_str(),
            message["api"].as_bool(),
            message["id"].as_str()
        ),
        (Some("deploybot"), Some("deploy 1.4 done"), Some(true), Some(id.as_str()))
    );
    // The same key again: the same answer, and nothing said twice.
    let once = r#"{"room": "lobby", "text": "only once"}"#;
    let first = post_once(&b, "/api/publish", once, "deploy-1.4-note");
    let again = post_once(&b, "/api/publish", once, "deploy-1.4-note");
    assert_eq!(
        (first.status, again.status, first.json()["id"].clone()),
        (200, 200, again.json()["id"].clone())
    );
    let other = post_once(&b, "/api/publish", r#"{"room": "lobby", "text": "x"}"#, "deploy-1.4-note");
    assert_eq!(other.status, 422, "{}", other.body);
    recv_line(&mut alice, "[server] only once");
    send(&mut alice, "after");
    recv_line(&mut alice, "alice: after");
    // Into a room with no members anywhere: kept, and replayed to whoever comes.
    assert_eq!(post(&b, "/api/publish", r#"{"room": "Attic", "text": "dusty"}"#).status, 200);
    let history = get_until(&a, "/api/history?room=attic", |json| {
        json["messages"].as_array().is_some_and(|m| m.len() == 1)
    });
    assert_eq!(
        (history["room"].as_str(), history["messages"][0]["api"].as_bool()),
        (Some("Attic"), Some(true))
    );
    let mut carol = chat.process(0).connect("/?nick=carol&room=attic");
    recv_until(&mut carol, |line| line == "[server] dusty");
    // The lobby's history has all of it, oldest first, ids and kinds as sent live.
    let lobby = get(&b, "/api/history?room=lobby").json();
    let said: Vec<(&str, &str)> = lobby["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(said, [("deploybot", "deploy 1.4 done"), ("server", "only once"), ("alice", "after")]);
    assert_eq!(lobby["messages"][0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(lobby["recovered"], false, "no since: the whole history, nothing to recover");
    let since = get(&a, &format!("/api/history?room=lobby&since={id}&limit=1")).json();
    assert_eq!(
        (since["messages"][0]["text"].as_str(), since["recovered"].as_bool()),
        (Some("after"), Some(false))
    );
    let since = get(&a, &format!("/api/history?room=lobby&since={id}")).json();
    assert_eq!((since["messages"].as_array().unwrap().len(), since["recovered"].as_bool()), (2, Some(true)));
    assert_eq!(get(&a, "/api/history?room=nowhere").status, 404);
}
both_modes!(a_published_message_is_seen_live_set_apart_and_kept(mode));

#[test]
fn what_is_published_follows_the_chat_s_rules() {
    let (_server, addr, _dir) = server_with_api("api-rules", &["--max-message-size", "1KiB"]);
    let error = |path: &str, body: &str| {
        let reply = post(&addr, path, body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.json()["error"].as_str().unwrap().to_string()
    };
    assert!(error("/api/publish", r#"{"room": "lobby", "text": "two\nlines"}"#)
        .starts_with("text: a message is one line"));
    let long = format!(r#"{{"room": "lobby", "text": "{}"}}"#, "x".repeat(1025));
    assert!(error("/api/publish", &long).contains("over --max-message-size (1024)"));
    assert!(error("/api/publish", r#"{"room": "lobby", "text": "hi", "from": "[PM from x"}"#)
        .starts_with("from: "));
    assert!(error("/api/publish", r#"{"room": "two words", "text": "hi"}"#).starts_with("room: "));
    assert_eq!(error("/api/publish", r#"{"room": "lobby", "txt": "hi"}"#), "text: missing");
    assert_eq!(
        error("/api/publish", r#"{"room": "lobby", "text": "hi", "color": 1}"#),
        "color: unknown field"
    );
    assert!(error("/api/publish", "{not json").starts_with("invalid JSON"));
    assert_eq!(
        error("/api/ban", r#"{"nick": "bob", "duration": "forever"}"#).split(':').next(),
        Some("duration")
    );
    assert_eq!(error("/api/send", r#"{"nick": "bob"}"#), "text: missing");
    assert_eq!(get(&addr, "/api/history?room=lobby&limit=5000").status, 400);
    assert_eq!(get(&addr, "/api/history?room=lobby&since=nope").status, 400);
    let wrong_method = get(&addr, "/api/publish");
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.head.contains("allow: post\r\n"));
}

/// `send` reaches every connection holding a nick (one user on two devices, in a cluster on
/// two processes); `kick` closes with 4000; `ban` closes and refuses, `bans` lists it and
/// `unban` lifts it, whichever process's API is asked.
fn send_kick_and_ban_reach_a_nick_on_every_process(mode: Mode) {
    const SECRET: &[u8] = b"a test secret that is long enough!";
    let dir = TempDir::new("api-moderate");
    let keys = dir.file("keys", format!("{KEY}\n").as_bytes());
    let secret = dir.file("secret", SECRET);
    let chat = Chat::start(mode, &["--api", "127.0.0.1:0", "--api-key-file", &keys, "--jwt-secret", &secret]);
    let (a, b) = (api_addr(chat.process(0)), api_addr(chat.process(1)));
    let token = |sub: &str| hs256(SECRET, serde_json::json!({"sub": sub, "exp": unix_now() + 600}));
    let mut phone = chat.process(0).connect(&format!("/?token={}", token("alice")));
    let mut laptop = chat.process(1).connect(&format!("/?token={}", token("alice")));
    for device in [&mut phone, &mut laptop] {
        recv_until(device, |line| line.starts_with("*** welcome, you are alice"));
    }
    let sent = post(&a, "/api/send", r#"{"nick": "ALICE", "text": "your build is green", "from": "ci"}"#);
    assert_eq!((sent.status, sent.json()["delivered"].as_u64()), (200, Some(2)), "{}", sent.body);
    for device in [&mut phone, &mut laptop] {
        recv_until(device, |line| line == "[PM from app ci] your build is green");
    }
    let nobody = post(&a, "/api/send", r#"{"nick": "zed", "text": "x"}"#);
    assert_eq!((nobody.status, nobody.json()["error"].as_str()), (404, Some("no such nick: zed")));
    // A kick closes every connection, with 4000 and the reason.
    let mut bob = chat.process(1).connect(&format!("/?token={}", token("bob")));
    recv_until(&mut bob, |line| line.starts_with("*** welcome, you are bob"));
    let kicked = post(&b, "/api/kick", r#"{"nick": "bob", "reason": "spam"}"#);
    assert_eq!((kicked.status, kicked.json()["kicked"].as_u64()), (200, Some(1)), "{}", kicked.body);
    assert_eq!(expect_close(&mut bob), (CloseCode::from(4000), "kicked by server: spam".to_string()));
    assert_eq!(post(&b, "/api/kick", r#"{"nick": "bob"}"#).status, 404);
    // A ban closes both devices and refuses her at connect, on either process.
    let banned = post(&b, "/api/ban", r#"{"nick": "alice", "duration": "10m", "reason": "flood"}"#);
    assert_eq!((banned.status, banned.json()["kicked"].as_u64()), (200, Some(2)), "{}", banned.body);
    for device in [&mut phone, &mut laptop] {
        assert_eq!(expect_close(device), (CloseCode::from(4000), "banned by server: flood".to_string()));
    }
    let until = banned.json()["until"].as_u64().unwrap();
    assert!(until > unix_now() * 1000 + 590_000, "ten minutes from now: {until}");
    let bans = get(&a, "/api/bans").json();
    assert_eq!(bans["bans"][0]["nick"], "alice");
    assert_eq!(
        (bans["bans"][0]["reason"].as_str(), bans["bans"][0]["by"].as_str()),
        (Some("flood"), Some("server"))
    );
    for process in chat.processes() {
        let refused =
            http_exchange(process, &upgrade_request(process, &format!("/?token={}", token("alice"))));
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    }
    let lifted = post(&a, "/api/unban", r#"{"nick": "alice"}"#);
    assert_eq!((lifted.status, lifted.json()["unbanned"].as_u64()), (200, Some(1)), "{}", lifted.body);
    assert_eq!(post(&a, "/api/unban", r#"{"nick": "alice"}"#).status, 404);
    get_until(&b, "/api/bans", |json| json["bans"].as_array().is_some_and(Vec::is_empty));
    let mut back = chat.process(1).connect(&format!("/?token={}", token("alice")));
    recv_until(&mut back, |line| line.starts_with("*** welcome, you are alice"));
}
both_modes!(send_kick_and_ban_reach_a_nick_on_every_process(mode));

#[test]
fn replies_are_counted_by_endpoint_and_status_on_the_metrics_port() {
    let (server, addr, _dir) = server_with_api("api-metrics", &["--metrics", "127.0.0.1:0"]);
    assert_eq!(post(&addr, "/api/publish", r#"{"room": "lobby", "text": "hi"}"#).status, 200);
    assert_eq!(post(&addr, "/api/publish", r#"{"room": "lobby"}"#).status, 400);
    assert_eq!(request(&addr, "GET", "/api/stats", None, None).status, 401);
    let exposition = scrape_metrics(&server.metrics_addr());
    for (series, count) in [
        (r#"wschat_api_requests_total{endpoint="publish",status="200"}"#, 1.0),
        (r#"wschat_api_requests_total{endpoint="publish",status="400"}"#, 1.0),
        (r#"wschat_api_requests_total{endpoint="other",status="401"}"#, 1.0),
    ] {
        assert_eq!(metric(&exposition, series), count, "{series} in:\n{exposition}");
    }
}

/// While its link to Redis is down, a process's API refuses what would change the chat (it
/// would reach this process alone and be undone once the link is back): 503, and nothing is
/// published; questions are still answered, from what this process knows.
#[test]
fn while_the_cluster_is_out_of_reach_changes_are_refused_with_503() {
    let Some(mut redis) = common::redis::RedisServer::start("api cluster down") else { return };
    let (_dir, file) = key_file("api-cluster-down", KEY);
    let url = redis.url();
    let server = TestServer::start(&["--api", "127.0.0.1:0", "--api-key-file", &file, "--redis", &url]);
    server.wait_for_log("connected to Redis at");
    let addr = api_addr(&server);
    assert_eq!(post(&addr, "/api/publish", r#"{"room": "lobby", "text": "linked"}"#).status, 200);
    redis.kill();
    server.wait_for_log("chat goes on on this server alone");
    for (path, body) in [
        ("/api/publish", r#"{"room": "attic", "text": "lost"}"#),
        ("/api/send", r#"{"nick": "bob", "text": "x"}"#),
        ("/api/kick", r#"{"nick": "bob"}"#),
        ("/api/ban", r#"{"nick": "bob", "duration": "1m"}"#),
        ("/api/unban", r#"{"nick": "bob"}"#),
    ] {
        let refused = post(&addr, path, body);
        assert_eq!(refused.status, 503, "{path}: {}", refused.body);
        assert!(refused.json()["error"].as_str().unwrap().contains("lost its link"), "{}", refused.body);
    }
    assert_eq!(get(&addr, "/api/history?room=attic").status, 404, "nothing was published");
    let stats = get(&addr, "/api/stats").json();
    assert_eq!(stats["cluster"], "down", "{stats}");
}
