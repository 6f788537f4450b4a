//! HTTP/1.1 request heads: finding where a head ends, deciding what a request is for, and the
//! error replies sent when it is not a usable WebSocket upgrade.
//!
//! The server reads the request head itself (bounded by [`MAX_HEAD_BYTES`]) so it can route by
//! path and refuse bad requests with a proper status before tungstenite sees them; tungstenite
//! then performs the upgrade on exactly the bytes read here. Everything in this file is pure.

use std::fmt::Write as _;

/// Largest request head accepted; a longer one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// The WebSocket endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: the chat, with the nick asked for in `?nick=`.
    Chat { nick: Option<String> },
    /// `/echo`: every data message sent straight back.
    Echo,
}

/// What to do with a complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Upgrade(Endpoint),
    Reject(Reply),
}

/// An HTTP error reply; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Self { status, reason, headers: Vec::new(), body: body.into() }
    }

    fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The server is at `--max-connections`.
    pub fn service_unavailable() -> Self {
        Self::new(503, "Service Unavailable", "server is full, try again later").with("Retry-After", "5")
    }

    /// The head did not arrive in full within the limit.
    pub fn too_large() -> Self {
        Self::new(431, "Request Header Fields Too Large", "request head too large")
    }

    /// The full response, ready to write.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = format!("{}\n", self.body);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

/// Length of the request head in `buf` (through the blank line), if it is all there.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// Decides what a complete request head asks for.
pub fn decide(head: &[u8]) -> Decision {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Decision::Reject(Reply::new(400, "Bad Request", "incomplete request"))
        }
        Err(httparse::Error::TooManyHeaders) => return Decision::Reject(Reply::too_large()),
        Err(e) => return Decision::Reject(Reply::new(400, "Bad Request", format!("malformed request: {e}"))),
    }
    let reject = |reply| Decision::Reject(reply);
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };

    if request.version != Some(1) {
        return reject(Reply::new(505, "HTTP Version Not Supported", "HTTP/1.1 required"));
    }
    if request.method != Some("GET") {
        return reject(Reply::new(405, "Method Not Allowed", "only GET is supported").with("Allow", "GET"));
    }
    let target = request.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let endpoint = match path {
        "/" => Endpoint::Chat { nick: query_param(query, "nick") },
        "/echo" => Endpoint::Echo,
        _ => {
            return reject(Reply::new(
                404,
                "Not Found",
                "no such endpoint; the chat is at / and the echo service at /echo",
            ))
        }
    };
    if header("Host").is_none() {
        return reject(Reply::new(400, "Bad Request", "missing Host header"));
    }
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return reject(
            Reply::new(
                426,
                "Upgrade Required",
                "this is a WebSocket endpoint; connect with a WebSocket client",
            )
            .with("Upgrade", "websocket")
            .with("Connection", "Upgrade"),
        );
    }
    if header("Sec-WebSocket-Version") != Some("13") {
        return reject(
            Reply::new(426, "Upgrade Required", "unsupported WebSocket version; 13 is supported")
                .with("Sec-WebSocket-Version", "13"),
        );
    }
    if !header("Sec-WebSocket-Key").is_some_and(is_valid_key) {
        return reject(Reply::new(400, "Bad Request", "missing or malformed Sec-WebSocket-Key"));
    }
    Decision::Upgrade(endpoint)
}

/// A key is the base64 encoding of 16 bytes: 22 base64 characters then `==` (RFC 6455 4.1).
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes.ends_with(b"==")
        && bytes[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The percent-decoded value of `name` in a query string, if present, non-empty and UTF-8.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|value| !value.is_empty())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(target: &str) -> String {
        format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    }

    fn status(head: &str) -> u16 {
        match decide(head.as_bytes()) {
            Decision::Reject(reply) => reply.status,
            Decision::Upgrade(_) => 101,
        }
    }

    #[test]
    fn routes_chat_and_echo() {
        assert_eq!(decide(upgrade("/").as_bytes()), Decision::Upgrade(Endpoint::Chat { nick: None }));
        assert_eq!(decide(upgrade("/echo").as_bytes()), Decision::Upgrade(Endpoint::Echo));
        assert_eq!(
            decide(upgrade("/?x=1&nick=caf%C3%A9").as_bytes()),
            Decision::Upgrade(Endpoint::Chat { nick: Some("café".into()) })
        );
        assert_eq!(
            decide(upgrade("/?nick=%ZZ").as_bytes()),
            Decision::Upgrade(Endpoint::Chat { nick: None })
        );
    }

    #[test]
    fn refuses_bad_requests_with_the_right_status() {
        assert_eq!(status(&upgrade("/nope")), 404);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        assert_eq!(status(&upgrade("/").replace("GET", "POST")), 405);
        assert_eq!(status(&upgrade("/").replace("HTTP/1.1", "HTTP/1.0")), 505);
        assert_eq!(status(&upgrade("/").replace("Version: 13", "Version: 8")), 426);
        assert_eq!(status(&upgrade("/").replace("dGhlIHNhbXBsZSBub25jZQ==", "short")), 400);
        assert_eq!(status(&upgrade("/").replace("Host: localhost\r\n", "")), 400);
        assert_eq!(status("\x00\x01garbage\r\n\r\n"), 400);
        let many: String = (0..60).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn version_reply_names_the_supported_version() {
        let Decision::Reject(reply) = decide(upgrade("/").replace("Version: 13", "Version: 8").as_bytes())
        else {
            panic!()
        };
        let text = String::from_utf8(reply.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let body_len = text.split("\r\n\r\n").nth(1).unwrap().len();
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }
}
