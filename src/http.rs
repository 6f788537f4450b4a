//! HTTP/1.1 request heads: finding where a head ends, deciding what a request is for, and the
//! replies sent when it is not a WebSocket upgrade (the chat page, or an error).
//!
//! The server reads the request head itself (bounded by [`MAX_HEAD_BYTES`]) so it can route by
//! path, serve the page, and refuse bad requests with a proper status before tungstenite sees
//! them; tungstenite then performs the upgrade on exactly the bytes read here. Everything in
//! this file is pure.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::auth::Token;
use crate::chat::JSON_SUBPROTOCOL;
use crate::origin::OriginPolicy;
use crate::web;

/// Largest request head accepted; a longer one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// What a chat client asks for in its upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatQuery {
    /// `?nick=`: the nick it wants.
    pub nick: Option<String>,
    /// `?room=`: the room to join instead of the lobby.
    pub room: Option<String>,
    /// `?since=EPOCH:SEQ`: the last message id it saw in that room.
    pub since: Option<String>,
    /// It offered the `wschat.json` subprotocol, which the server then selects.
    pub json: bool,
    /// It presented a token, but the server has no sign-in keys: it is told it joins as a guest.
    pub ignored_token: bool,
}

/// The WebSocket endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: the chat.
    Chat(ChatQuery),
    /// `/echo`: every data message sent straight back.
    Echo,
}

/// What to do with a complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A WebSocket upgrade to this endpoint, with the token it presented, if any.
    Upgrade(Endpoint, Option<Token>),
    /// A page request answered successfully (200 or 304).
    Serve(Reply),
    /// `GET /session`: would this token be let in? Answered like the handshake would (204, or
    /// 401 / 403 with the reason), so a browser page, which cannot see a refused WebSocket's
    /// status, can tell its user why.
    CheckSession(Option<Token>),
    /// `GET /healthz`: answered from the server's state (see `crate::health`); `true` for `HEAD`.
    Health(bool),
    /// An error reply.
    Reject(Reply),
}

/// An HTTP response; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Answering `HEAD`: the headers describe the body, which is not sent.
    pub head_only: bool,
}

impl Reply {
    /// A plain-text reply whose body is `text` and a newline.
    pub fn new(status: u16, reason: &'static str, text: impl Into<String>) -> Self {
        let mut body = text.into();
        body.push('\n');
        Self {
            status,
            reason,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body),
            head_only: false,
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Not a WebSocket handshake where one is needed.
    fn upgrade_required(text: &str) -> Self {
        Self::new(426, "Upgrade Required", text).with("Upgrade", "websocket")
    }

    fn method_not_allowed(text: &str) -> Self {
        Self::new(405, "Method Not Allowed", text).with("Allow", "GET, HEAD")
    }

    /// The server is closing its clients and takes no new one: try another (or again soon).
    pub fn shutting_down() -> Self {
        Self::new(503, "Service Unavailable", "the server is shutting down").with("Retry-After", "1")
    }

    /// The server is at `--max-connections`.
    pub fn service_unavailable() -> Self {
        Self::new(503, "Service Unavailable", "server is full, try again later").with("Retry-After", "5")
    }

    /// The client's address is at `--max-connections-per-ip`.
    pub fn too_many_from_address() -> Self {
        Self::new(503, "Service Unavailable", "too many connections from your address, try again later")
            .with("Retry-After", "5")
    }

    /// `/session` for a token that would be let in.
    pub fn session_ok() -> Self {
        Self::new(204, "No Content", "")
    }

    /// No valid token (see `crate::auth`): the reason, never the token.
    pub fn unauthorized(why: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", why.into()).with("WWW-Authenticate", "Bearer")
    }

    /// The head did not arrive in full within the limit.
    pub fn too_large() -> Self {
        Self::new(431, "Request Header Fields Too Large", "request head too large")
    }

    /// The status line and headers, through the blank line.
    pub fn head(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        if self.status != 304 && self.status != 204 {
            let _ = write!(
                head,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            );
        }
        // One Connection header: every reply closes, and one that offers an upgrade names it
        // too (RFC 9110 7.8: Upgrade goes with the "upgrade" connection option).
        let offers_upgrade = self.headers.iter().any(|(name, _)| *name == "Upgrade");
        head.push_str(if offers_upgrade {
            "Connection: Upgrade, close\r\n"
        } else {
            "Connection: close\r\n"
        });
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The head, and the body if one is to be sent. The body of an embedded file is shared, not
    /// copied.
    pub fn into_parts(self) -> (Bytes, Option<Bytes>) {
        let head = Bytes::from(self.head());
        let body = (!self.head_only && self.status != 304 && !self.body.is_empty()).then_some(self.body);
        (head, body)
    }
}

/// What the bytes of a request read so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadProgress {
    /// Keep reading.
    Incomplete,
    /// `buf` is exactly one complete head, ready for [`decide`].
    Complete,
    /// Refused before routing: malformed, too large, or followed by data.
    Refused(Reply),
}

/// Judges the bytes received so far. The head ends where the HTTP parser says it does (lines
/// may end in CRLF or a bare LF, as HTTP/1.1 allows a recipient to accept), so what the server
/// routes is exactly what it parsed. A head over [`MAX_HEAD_BYTES`] gets 431, bytes that
/// cannot start a request get 400 at once, and bytes after the head get 400, because a client
/// must wait for the 101 before sending frames (RFC 6455 4.1) and a second request on the same
/// connection would otherwise be silently dropped.
pub fn head_progress(buf: &[u8]) -> HeadProgress {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            HeadProgress::Refused(Reply::too_large())
        }
        Ok(httparse::Status::Partial) => HeadProgress::Incomplete,
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            HeadProgress::Refused(Reply::too_large())
        }
        Ok(httparse::Status::Complete(len)) if buf.len() > len => {
            HeadProgress::Refused(Reply::new(400, "Bad Request", "data sent before the handshake completed"))
        }
        Ok(httparse::Status::Complete(_)) => HeadProgress::Complete,
        Err(httparse::Error::TooManyHeaders) => HeadProgress::Refused(Reply::too_large()),
        Err(e) => HeadProgress::Refused(Reply::new(400, "Bad Request", format!("malformed request: {e}"))),
    }
}

/// Decides what a complete request head asks for. `secure`: it came over TLS (the page is
/// `https://`, which changes the server's own origin and adds HSTS to the page).
pub fn decide(head: &[u8], origins: &OriginPolicy, secure: bool) -> Decision {
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
    let request = Request(request);
    for name in ["Host", "Origin"] {
        // Two values, two readings: a proxy may route by one while we check the other.
        if request.values(name).nth(1).is_some() {
            return Decision::Reject(Reply::new(400, "Bad Request", format!("more than one {name} header")));
        }
    }
    let method = request.0.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Decision::Reject(Reply::method_not_allowed("only GET and HEAD are supported"));
    }
    let target = request.0.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = request.header("Host");
    if host.is_none() && request.0.version == Some(1) {
        return Decision::Reject(Reply::new(400, "Bad Request", "missing Host header"));
    }
    if !request.has_token("Upgrade", "websocket") {
        return match (web::asset(path), path) {
            (Some(asset), _) => {
                let head_only = method == "HEAD";
                Decision::Serve(serve(asset, head_only, request.header("If-None-Match"), host, secure))
            }
            (None, "/session") => Decision::CheckSession(presented_token(&request, query)),
            (None, "/healthz") => Decision::Health(method == "HEAD"),
            (None, "/echo") => Decision::Reject(Reply::upgrade_required(
                "this is a WebSocket endpoint; connect with a WebSocket client",
            )),
            (None, _) => Decision::Reject(not_found()),
        };
    }
    match judge_upgrade(&request, path, query, origins, secure) {
        Ok(endpoint) => Decision::Upgrade(endpoint, presented_token(&request, query)),
        Err(reply) => Decision::Reject(reply),
    }
}

/// A parsed request head, with header look-ups.
struct Request<'h, 'b>(httparse::Request<'h, 'b>);

impl Request<'_, '_> {
    /// The raw values of every header called `name`.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    /// The first value of header `name`, trimmed, if it is UTF-8.
    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next().and_then(|v| std::str::from_utf8(v).ok()).map(str::trim)
    }

    /// Whether any header `name` lists `token` exactly (comma-separated; subprotocol names
    /// are case-sensitive).
    fn lists_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .any(|v| v.split(',').any(|t| t.trim() == token))
    }

    /// Whether header `name` lists `token` (comma-separated, any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Checks a WebSocket upgrade request (RFC 6455 4.2.1) and the origin policy.
fn judge_upgrade(
    request: &Request,
    path: &str,
    query: &str,
    origins: &OriginPolicy,
    secure: bool,
) -> Result<Endpoint, Reply> {
    if request.0.version != Some(1) {
        return Err(Reply::new(505, "HTTP Version Not Supported", "HTTP/1.1 required"));
    }
    if request.0.method != Some("GET") {
        return Err(Reply::method_not_allowed("a WebSocket handshake is a GET"));
    }
    let endpoint = match path {
        "/" => Endpoint::Chat(ChatQuery {
            nick: query_param(query, "nick"),
            room: query_param(query, "room"),
            since: query_param(query, "since"),
            json: request.lists_token("Sec-WebSocket-Protocol", JSON_SUBPROTOCOL),
            ignored_token: false, // known once the keys are consulted
        }),
        "/echo" => Endpoint::Echo,
        _ => return Err(not_found()),
    };
    if !request.has_token("Connection", "upgrade") {
        return Err(Reply::upgrade_required("a WebSocket handshake needs Connection: Upgrade"));
    }
    if request.header("Sec-WebSocket-Version") != Some("13") {
        return Err(Reply::new(426, "Upgrade Required", "unsupported WebSocket version; 13 is supported")
            .with("Sec-WebSocket-Version", "13"));
    }
    if !request.header("Sec-WebSocket-Key").is_some_and(is_valid_key) {
        return Err(Reply::new(400, "Bad Request", "missing or malformed Sec-WebSocket-Key"));
    }
    let origin = request.header("Origin");
    if origin.is_none() && request.values("Origin").next().is_some() {
        // Present but not text: it cannot name an allowed origin, and must not count as absent.
        return Err(Reply::new(403, "Forbidden", "the Origin header is not valid text"));
    }
    if !origins.permits(origin, request.header("Host").unwrap_or_default(), secure) {
        return Err(Reply::new(
            403,
            "Forbidden",
            format!(
                "origin {} may not connect here; the server allows its own origin and those given with --allowed-origins",
                origin.unwrap_or_default()
            ),
        ));
    }
    Ok(endpoint)
}

/// The token a client presents: `?token=JWT` (browsers cannot set headers on a WebSocket), or
/// `Authorization: Bearer JWT`.
fn presented_token(request: &Request, query: &str) -> Option<Token> {
    let bearer = request
        .header("Authorization")
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    query_param(query, "token").or(bearer).map(Token)
}

fn not_found() -> Reply {
    Reply::new(
        404,
        "Not Found",
        "no such page; the chat page and WebSocket are at /, the echo service at /echo",
    )
}

/// A 200 (or 304 when the browser's copy is current) for an embedded file.
fn serve(
    asset: &web::Asset,
    head_only: bool,
    if_none_match: Option<&str>,
    host: Option<&str>,
    secure: bool,
) -> Reply {
    let fresh = asset.is_current(if_none_match);
    let mut reply = Reply {
        status: if fresh { 304 } else { 200 },
        reason: if fresh { "Not Modified" } else { "OK" },
        headers: Vec::new(),
        content_type: asset.content_type,
        body: Bytes::from_static(asset.body),
        head_only,
    };
    reply = reply.with("Cache-Control", "no-cache").with("ETag", asset.etag);
    reply.headers.extend(web::security_headers(host, secure));
    reply
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
    use crate::wire::{UpgradeRequest, SAMPLE_KEY};

    impl Reply {
        /// The whole response as sent.
        fn to_bytes(&self) -> Vec<u8> {
            let (head, body) = self.clone().into_parts();
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(body.as_deref().unwrap_or_default());
            bytes
        }
    }

    fn upgrade(target: &str) -> String {
        // `Connection` may list other tokens besides `Upgrade`.
        UpgradeRequest::new("localhost", target)
            .to_string()
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade")
    }

    fn decide(head: &[u8]) -> Decision {
        super::decide(head, &OriginPolicy::default(), false)
    }

    fn status(head: &str) -> u16 {
        match decide(head.as_bytes()) {
            Decision::Reject(reply) | Decision::Serve(reply) => reply.status,
            Decision::Upgrade(..) => 101,
            Decision::CheckSession(_) => 204,
            Decision::Health(_) => panic!("answered by the hub"),
        }
    }

    fn reply(head: &str) -> String {
        match decide(head.as_bytes()) {
            Decision::Reject(reply) | Decision::Serve(reply) => String::from_utf8(reply.to_bytes()).unwrap(),
            Decision::Upgrade(..) | Decision::CheckSession(_) | Decision::Health(_) => {
                panic!("not answered here")
            }
        }
    }

    #[test]
    fn routes_chat_and_echo() {
        assert_eq!(
            decide(upgrade("/").as_bytes()),
            Decision::Upgrade(Endpoint::Chat(ChatQuery::default()), None)
        );
        assert_eq!(decide(upgrade("/echo").as_bytes()), Decision::Upgrade(Endpoint::Echo, None));
        assert_eq!(
            decide(upgrade("/?x=1&nick=caf%C3%A9").as_bytes()),
            Decision::Upgrade(
                Endpoint::Chat(ChatQuery { nick: Some("café".into()), ..ChatQuery::default() }),
                None
            )
        );
        let resume = UpgradeRequest::new("localhost", "/?room=dev&since=k3f9%3A42")
            .header("Sec-WebSocket-Protocol", "other, wschat.json")
            .to_string();
        assert_eq!(
            decide(resume.as_bytes()),
            Decision::Upgrade(
                Endpoint::Chat(ChatQuery {
                    room: Some("dev".into()),
                    since: Some("k3f9:42".into()),
                    json: true,
                    ..ChatQuery::default()
                }),
                None
            )
        );
        let other =
            UpgradeRequest::new("localhost", "/").header("Sec-WebSocket-Protocol", "WSCHAT.JSON").to_string();
        assert_eq!(decide(other.as_bytes()), Decision::Upgrade(Endpoint::Chat(ChatQuery::default()), None));
        assert_eq!(
            decide(upgrade("/?nick=%ZZ").as_bytes()),
            Decision::Upgrade(Endpoint::Chat(ChatQuery::default()), None)
        );
    }

    #[test]
    fn a_token_is_taken_from_the_query_or_a_bearer_header() {
        let token = |head: &str| match decide(head.as_bytes()) {
            Decision::Upgrade(_, token) => token.map(|t| t.0),
            other => panic!("{other:?}"),
        };
        assert_eq!(token(&upgrade("/?token=abc.def.ghi")), Some("abc.def.ghi".into()));
        assert_eq!(token(&upgrade("/echo?token=abc")), Some("abc".into()));
        let bearer =
            UpgradeRequest::new("localhost", "/").header("Authorization", "Bearer xyz.123").to_string();
        assert_eq!(token(&bearer), Some("xyz.123".into()));
        let basic =
            UpgradeRequest::new("localhost", "/").header("Authorization", "Basic dXNlcg==").to_string();
        assert_eq!(token(&basic), None);
        assert_eq!(token(&upgrade("/")), None);
    }

    #[test]
    fn a_426_has_one_connection_header_naming_the_upgrade() {
        let text = reply("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
        assert!(
            text.contains("\r\nConnection: Upgrade, close\r\n")
                && text.contains("\r\nUpgrade: websocket\r\n")
        );
        let not_found = reply("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(not_found.matches("Connection:").count(), 1);
        assert!(not_found.contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn refuses_bad_requests_with_the_right_status() {
        assert_eq!(status(&upgrade("/nope")), 404);
        assert_eq!(status("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        assert_eq!(status("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        assert_eq!(status(&upgrade("/").replace("GET", "POST")), 405);
        assert_eq!(status("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
        assert_eq!(status(&upgrade("/").replace("GET", "HEAD")), 405);
        assert_eq!(
            status(&upgrade("/").replace("Connection: keep-alive, Upgrade", "Connection: close")),
            426
        );
        assert_eq!(status(&upgrade("/").replace("HTTP/1.1", "HTTP/1.0")), 505);
        assert_eq!(status(&upgrade("/").replace("Version: 13", "Version: 8")), 426);
        assert_eq!(status(&upgrade("/").replace(SAMPLE_KEY, "short")), 400);
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
    fn the_head_ends_where_the_parser_says() {
        assert_eq!(head_progress(b"GET / HTTP/1.1\r\n"), HeadProgress::Incomplete);
        assert_eq!(head_progress(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), HeadProgress::Complete);
        // Bare LF line ends are a whole head too, not a wait for the handshake timeout.
        assert_eq!(head_progress(b"GET / HTTP/1.1\nHost: x\n\n"), HeadProgress::Complete);
        let refused = |bytes: &[u8]| match head_progress(bytes) {
            HeadProgress::Refused(reply) => reply.status,
            other => panic!("{other:?}"),
        };
        // A request smuggled after the first is refused, not silently dropped.
        assert_eq!(refused(b"GET / HTTP/1.1\nHost: x\n\nGET /smuggled HTTP/1.1\n\n"), 400);
        assert_eq!(refused(b"\x00\x01garbage"), 400);
        assert_eq!(refused(&[b'a'; 9000]), 431);
        assert_eq!(refused(format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000)).as_bytes()), 431);
    }

    #[test]
    fn duplicate_host_or_origin_headers_are_refused() {
        let twice = |name: &str| {
            upgrade("/").replace("Host: localhost\r\n", &format!("Host: localhost\r\n{name}: x\r\n"))
        };
        assert_eq!(status(&twice("Host")), 400);
        let origins = upgrade("/").replace(
            "Host: localhost\r\n",
            "Host: localhost\r\nOrigin: http://localhost\r\nOrigin: http://evil.example\r\n",
        );
        assert_eq!(status(&origins), 400);
    }

    #[test]
    fn an_origin_that_is_not_text_is_refused_not_ignored() {
        let mut head = upgrade("/").into_bytes();
        let at = head.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        head.splice(at..at, b"Origin: http://evil.example\xff\r\n".iter().copied());
        match super::decide(&head, &OriginPolicy::default(), false) {
            Decision::Reject(reply) => assert_eq!(reply.status, 403),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_gets_serve_the_page_with_its_headers() {
        let page = reply("GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n");
        let (head, body) = page.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
        assert!(head.contains("connect-src 'self' ws://127.0.0.1:9001 wss://127.0.0.1:9001;"));
        assert!(body.starts_with("<!doctype html>"));
        // HTTP/1.0 clients (curl -0, old proxies) get the page too.
        assert_eq!(status("GET /style.css HTTP/1.0\r\n\r\n"), 200);
    }

    #[test]
    fn index_html_is_the_page() {
        let page = |path: &str| reply(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(page("/index.html"), page("/"));
    }

    #[test]
    fn healthz_is_left_to_the_hub() {
        assert_eq!(decide(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), Decision::Health(false));
        assert_eq!(decide(b"HEAD /healthz?probe=lb HTTP/1.1\r\nHost: x\r\n\r\n"), Decision::Health(true));
        assert_eq!(status(&upgrade("/healthz")), 404, "not a WebSocket endpoint");
    }

    #[test]
    fn head_gets_the_headers_without_the_body() {
        let get = reply("GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
        let head = reply("HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(get.split_once("\r\n\r\n").unwrap().0, head.trim_end());
    }

    #[test]
    fn a_current_etag_gets_304() {
        let etag = crate::web::asset("/").unwrap().etag;
        let cached = reply(&format!("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"old\", {etag}\r\n\r\n"));
        assert!(cached.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(cached.ends_with("\r\n\r\n") && !cached.contains("Content-Length"));
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"old\"\r\n\r\n"), 200);
    }

    #[test]
    fn cross_origin_handshakes_are_refused_unless_allowed() {
        let with_origin = |origin: &str| {
            upgrade("/")
                .replace("Host: localhost\r\n", &format!("Host: localhost:9001\r\nOrigin: {origin}\r\n"))
        };
        assert_eq!(status(&with_origin("http://localhost:9001")), 101);
        assert_eq!(status(&with_origin("http://evil.example")), 403);
        assert_eq!(status(&upgrade("/")), 101, "no Origin: not a browser");
        let allowed = OriginPolicy::new(&["http://evil.example".to_string()]).unwrap();
        assert!(matches!(
            super::decide(with_origin("http://evil.example").as_bytes(), &allowed, false),
            Decision::Upgrade(..)
        ));
    }
}
