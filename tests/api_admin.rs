//! The admin page on the API's listener (`GET /admin`), against the real binary: served without
//! a key, as HTML under the chat page's Content-Security-Policy, with its script and style, on a
//! connection that goes on to API requests. What the page does in a browser is
//! `tests/browser/admin.mjs`'s.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

const KEY: &str = "test-key-0123456789abcdef";

/// A server with the API on a port of its own; returns it, the admin page's address (from the
/// log) and the key file's directory.
fn server_with_api() -> (TestServer, String, TempDir) {
    let dir = TempDir::new("api-admin");
    let keys = dir.file("keys", format!("{KEY}\n").as_bytes());
    let server = TestServer::start(&["--api", "127.0.0.1:0", "--api-key-file", keys.as_str()]);
    let line = server.wait_for_log("admin page at http://");
    let url = line.split("admin page at ").nth(1).unwrap().trim().to_string();
    (server, url, dir)
}

/// The replies to `requests`, sent one after the other on one connection (the last closes it).
fn exchange(addr: &str, requests: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(requests.as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    String::from_utf8(reply).unwrap()
}

#[test]
fn the_admin_page_is_served_without_a_key_under_the_chat_pages_policy() {
    let (_server, url, _dir) = server_with_api();
    let addr = url.strip_prefix("http://").unwrap().strip_suffix("/admin").unwrap();
    let page = exchange(addr, "GET /admin HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    let csp = page.lines().find(|line| line.starts_with("Content-Security-Policy: ")).expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.contains(r#"<script src="/admin.js" defer></script>"#));

    // Its files, then the API on the same connection: the page's lengths are right, and a key
    // is still needed under /api/.
    let requests = format!(
        "HEAD /admin.js HTTP/1.1\r\nHost: api\r\n\r\n\
         GET /admin.css HTTP/1.1\r\nHost: api\r\n\r\n\
         GET /api/stats HTTP/1.1\r\nHost: api\r\n\r\n\
         GET /api/stats HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    );
    let replies = exchange(addr, &requests);
    let statuses: Vec<&str> =
        replies.match_indices("HTTP/1.1 ").map(|(at, _)| &replies[at + 9..at + 12]).collect();
    assert_eq!(statuses, ["200", "200", "401", "200"], "{replies}");
    assert!(replies.contains("Content-Type: text/javascript; charset=utf-8\r\n"));
    assert!(replies.contains("Content-Type: text/css; charset=utf-8\r\n"));
    assert!(replies.ends_with("}\n") && replies.contains("\"connections\":0"), "{replies}");
}
