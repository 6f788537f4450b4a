//! The browser page, the health check and the origin policy, over real sockets against the
//! real binary.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use wschat::wire::UpgradeRequest;

fn handshake_from(server: &TestServer, origin: Option<&str>) -> String {
    let host = server.addr.to_string();
    let request = UpgradeRequest::new(&host, "/");
    let request = match origin {
        Some(origin) => request.header("Origin", origin),
        None => request,
    }
    .to_string();
    let mut stream = server.tcp();
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    read_http_head(&mut stream)
}

fn split(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").expect("a complete response")
}

#[test]
fn the_page_and_its_files_are_served_with_proper_headers() {
    let server = TestServer::start(&[]);
    let host = server.addr.to_string();
    // The start-up log says where to go, with the port the server got for :0.
    server.wait_for_log(&format!("open http://{host}/ in a browser"));
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", "<!doctype html>"),
        ("/app.js", "text/javascript; charset=utf-8", "new WebSocket("),
        ("/style.css", "text/css; charset=utf-8", ":root"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = http_exchange(&server, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        let (head, body) = split(&response);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
        assert!(head.contains(&format!("\r\nContent-Type: {content_type}\r\n")), "{path}: {head}");
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{path}: {head}");
        assert!(head.contains("\r\nCache-Control: no-cache\r\n"), "{head}");
        assert!(head.contains("\r\nETag: \""), "{head}");
        assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{head}");
        assert!(head.contains("\r\nX-Frame-Options: DENY\r\n"), "{head}");
        assert!(
            head.contains(&format!(
                "\r\nContent-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
                 img-src 'self'; connect-src 'self' ws://{host} wss://{host};"
            )),
            "{head}"
        );
        assert!(body.contains(marker), "{path}");
    }
}

#[test]
fn index_html_is_the_page_with_the_same_caching() {
    let server = TestServer::start(&[]);
    let page = http_exchange(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let index = http_exchange(&server, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index}");
    assert_eq!(index, page);
    let etag = index.lines().find_map(|l| l.strip_prefix("ETag: ")).expect("ETag header");
    let cached = http_exchange(
        &server,
        &format!("GET /index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert!(cached.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{cached}");
    let head = http_exchange(&server, "HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(split(&head), (split(&page).0, ""));
}

/// `METHOD /healthz`: the response head, and the body as JSON (Null when there is none).
fn healthz(server: &TestServer, method: &str) -> (String, Value) {
    let response = http_exchange(server, &format!("{method} /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (head, body) = split(&response);
    let body = if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect(body) };
    (head.to_string(), body)
}

/// Asks `/healthz` until it answers `status`, for at most [`WAIT`]; returns the body.
fn wait_for_health(server: &TestServer, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (head, body) = healthz(server, "GET");
        if head.starts_with(&format!("HTTP/1.1 {status} ")) {
            return body;
        }
        assert!(Instant::now() < deadline, "/healthz still answers {head}{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn healthz_answers_200_with_the_open_connections_and_head_works() {
    let server = TestServer::start(&[]);
    let (head, body) = healthz(&server, "GET");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
    assert!(head.contains("\r\nCache-Control: no-store"), "{head}");
    assert_eq!(body, json!({"status": "ok", "connections": 0}));
    let _clients = (server.chat_client("ann"), server.chat_client("bob"), server.connect("/echo"));
    assert_eq!(healthz(&server, "GET").1, json!({"status": "ok", "connections": 3}));
    let (head_only, nothing) = healthz(&server, "HEAD");
    assert_eq!((head_only.as_str(), nothing), (head.as_str(), Value::Null));
}

#[test]
fn healthz_is_503_while_the_cluster_link_is_down_and_200_once_it_is_back() {
    let test = "healthz_is_503_while_the_cluster_link_is_down_and_200_once_it_is_back";
    let Some(mut redis) = RedisServer::start(test) else { return };
    let server = TestServer::start(&["--redis", &redis.url()]);
    let _ann = server.chat_client("ann");
    let linked = json!({"status": "ok", "connections": 1, "cluster": "linked"});
    assert_eq!(wait_for_health(&server, "200"), linked);

    redis.kill();
    let down = wait_for_health(&server, "503");
    assert_eq!(down, json!({"status": "cluster link down", "connections": 1, "cluster": "down"}));
    let (head, nothing) = healthz(&server, "HEAD");
    assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && nothing.is_null(), "{head}");

    let _redis = RedisServer::start_on(redis.port);
    assert_eq!(wait_for_health(&server, "200"), linked);
}

#[test]
fn head_requests_get_headers_only() {
    let server = TestServer::start(&[]);
    let get = http_exchange(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = http_exchange(&server, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(split(&get).0, split(&head).0);
    assert_eq!(split(&head).1, "", "no body after a HEAD");
}

#[test]
fn a_browser_with_the_current_copy_gets_304() {
    let server = TestServer::start(&[]);
    let first = http_exchange(&server, "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
    let etag = first.lines().find_map(|l| l.strip_prefix("ETag: ")).expect("ETag header");
    let again =
        http_exchange(&server, &format!("GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"));
    assert!(again.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{again}");
    assert_eq!(split(&again).1, "");
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let server = TestServer::start(&[]);
    let missing = http_exchange(&server, "GET /index.php HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
    let post = http_exchange(&server, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
}

#[test]
fn cross_site_handshakes_are_refused_with_403() {
    let server = TestServer::start(&[]);
    let own = format!("http://{}", server.addr);
    assert!(handshake_from(&server, Some(&own)).starts_with("HTTP/1.1 101 "));
    assert!(handshake_from(&server, None).starts_with("HTTP/1.1 101 "), "terminal clients send no Origin");
    let evil = handshake_from(&server, Some("http://evil.example"));
    assert!(evil.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{evil}");
    let logged = server.wait_for_log("403 Forbidden");
    assert!(logged.contains("origin http://evil.example may not connect here"), "{logged}");
    // The server carries on.
    let mut ws = server.chat_client("still-here");
    send(&mut ws, "hi");
    recv_until(&mut ws, |t| t == "still-here: hi");
}

#[test]
fn allowed_origins_admits_the_listed_sites() {
    let server = TestServer::start(&["--allowed-origins", "https://chat.example.com,http://localhost:3000"]);
    assert!(handshake_from(&server, Some("https://chat.example.com")).starts_with("HTTP/1.1 101 "));
    assert!(handshake_from(&server, Some("http://localhost:3000")).starts_with("HTTP/1.1 101 "));
    assert!(handshake_from(&server, Some("http://other.example")).starts_with("HTTP/1.1 403 "));
    let any = TestServer::start(&["--allowed-origins", "*"]);
    assert!(handshake_from(&any, Some("http://other.example")).starts_with("HTTP/1.1 101 "));
}

#[test]
fn a_malformed_allowed_origin_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wschat-server"))
        .args(["127.0.0.1:0", "--allowed-origins", "chat.example.com"])
        .output()
        .expect("run wschat-server");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allowed-origins"));
}
