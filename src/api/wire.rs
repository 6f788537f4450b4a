//! The HTTP of the API, apart from sockets: a request read from the bytes a connection has
//! sent ([`parse`]), and a reply turned into bytes ([`Reply::encode`]).
//!
//! What a client may make the server hold is bounded here: a head of at most [`MAX_HEAD`]
//! bytes, a body of at most [`MAX_BODY`] (413 past it, told from `Content-Length` before any
//! of the body is read), and a `POST` must say how long its body is (411 without
//! `Content-Length`: no chunked bodies). Anything malformed is a 400, after which the
//! connection is closed (where the next request would start is unknown).

use serde_json::json;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8192;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 << 10;

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without its query.
    pub path: String,
    /// The query, without its `?` (empty if none).
    pub query: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<Vec<u8>>,
    /// The `Idempotency-Key` header's value, if any.
    pub idempotency_key: Option<String>,
    /// The `If-None-Match` header's value, if any (the admin page's files are revalidated).
    pub if_none_match: Option<String>,
    pub body: Vec<u8>,
    /// The client keeps the connection open for another request.
    pub keep_alive: bool,
}

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet.
    Partial,
    /// A request, and how many bytes of the input it took.
    Complete(Request, usize),
    /// No request can come of these bytes: answer this, then close.
    Refused(Reply),
}

/// Reads the request at the start of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut headers);
    let head_len = match head.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) => {
            return Parsed::Refused(Reply::error(431, format!("request head over {MAX_HEAD} bytes")))
        }
        Err(e) => return Parsed::Refused(Reply::error(400, format!("malformed request: {e}"))),
    };
    if head_len > MAX_HEAD {
        return Parsed::Refused(Reply::error(431, format!("request head over {MAX_HEAD} bytes")));
    }
    let method = head.method.unwrap_or_default().to_string();
    let (path, query) = head.path.unwrap_or("/").split_once('?').unwrap_or((head.path.unwrap_or("/"), ""));
    let mut request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization: None,
        idempotency_key: None,
        if_none_match: None,
        body: Vec::new(),
        keep_alive: head.version == Some(1),
    };
    let mut length = None;
    for header in head.headers.iter() {
        let value = header.value;
        match header.name.to_ascii_lowercase().as_str() {
            "authorization" => request.authorization = Some(value.to_vec()),
            "idempotency-key" => request.idempotency_key = Some(String::from_utf8_lossy(value).into_owned()),
            "if-none-match" => request.if_none_match = Some(String::from_utf8_lossy(value).into_owned()),
            "connection" if value.eq_ignore_ascii_case(b"close") => request.keep_alive = false,
            "connection" if value.eq_ignore_ascii_case(b"keep-alive") => request.keep_alive = true,
            "transfer-encoding" => {
                let reply = Reply::error(411, "chunked bodies are not accepted: send Content-Length");
                return Parsed::Refused(reply);
            }
            "content-length" => {
                let parsed = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                match (parsed, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Parsed::Refused(Reply::error(400, "bad Content-Length")),
                }
            }
            _ => {}
        }
    }
    let length = match (length, request.method.as_str()) {
        (Some(n), _) if n > MAX_BODY => {
            return Parsed::Refused(Reply::error(413, format!("body over {MAX_BODY} bytes")));
        }
        (Some(n), _) => n,
        (None, "POST") => return Parsed::Refused(Reply::error(411, "a POST needs Content-Length")),
        (None, _) => 0,
    };
    let Some(body) = input.get(head_len..head_len + length) else { return Parsed::Partial };
    request.body = body.to_vec();
    Parsed::Complete(request, head_len + length)
}

/// The type of the API's answers; a JSON body is sent with a newline after it (for terminals).
pub const JSON: &str = "application/json";

/// A reply: a status and a JSON body, or one of the admin page's files (`admin.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The methods a 405 names.
    pub allow: Option<&'static str>,
    /// [`JSON`], but for the admin page's files.
    pub content_type: &'static str,
    /// The other headers: `Cache-Control: no-store` for JSON; a page's cache and security
    /// headers.
    pub headers: Vec<(&'static str, String)>,
    /// The head alone is sent (a `HEAD`), with the length the body would have.
    pub head_only: bool,
}

impl Reply {
    /// `200` with this JSON.
    pub fn ok(body: serde_json::Value) -> Self {
        Self::json(200, body.to_string())
    }

    /// An error: `{"error": "…"}`, on one line.
    pub fn error(status: u16, why: impl Into<String>) -> Self {
        let why: String = why.into().replace(['\r', '\n'], " ");
        Self::json(status, json!({ "error": why }).to_string())
    }

    fn json(status: u16, body: String) -> Self {
        let headers = vec![("Cache-Control", "no-store".to_string())];
        Self { status, body, allow: None, content_type: JSON, headers, head_only: false }
    }

    /// The whole reply, head and body; `keep_alive` false closes the connection after it.
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let newline = if self.content_type == JSON { "\n" } else { "" };
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        // A 304 has no body, so neither the type nor the length of one (as the chat's pages).
        if self.status != 304 {
            let length = self.body.len() + newline.len();
            head.push_str(&format!("Content-Type: {}\r\nContent-Length: {length}\r\n", self.content_type));
        }
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer\r\n");
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        head.push_str(&format!("Connection: {connection}\r\n\r\n"));
        let mut reply = head.into_bytes();
        if self.status != 304 && !self.head_only {
            reply.extend_from_slice(self.body.as_bytes());
            reply.extend_from_slice(newline.as_bytes());
        }
        reply
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        409 => "Conflict",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> (Request, usize) {
        match parse(input) {
            Parsed::Complete(request, used) => (request, used),
            other => panic!("{other:?}"),
        }
    }

    fn refused(input: &[u8]) -> u16 {
        match parse(input) {
            Parsed::Refused(reply) => reply.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_with_its_body_and_what_follows_it() {
        let input =
            b"POST /api/publish?x=1 HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\n\r\n{}GET";
        let (request, used) = complete(input);
        assert_eq!(
            (request.method.as_str(), request.path.as_str(), request.query.as_str()),
            ("POST", "/api/publish", "x=1")
        );
        assert_eq!(request.body, b"{}");
        assert_eq!(request.authorization.as_deref(), Some(&b"Bearer k"[..]));
        assert!(request.keep_alive);
        assert_eq!(&input[used..], b"GET");
        assert_eq!(parse(&input[..input.len() - 4]), Parsed::Partial, "the body is not all there");
    }

    #[test]
    fn bounded_bodies_with_a_length() {
        assert_eq!(refused(b"POST /api/publish HTTP/1.1\r\n\r\n"), 411);
        assert_eq!(refused(b"POST /api/publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
        assert_eq!(refused(b"POST /api/publish HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"), 413);
        assert_eq!(refused(b"POST /api/publish HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(refused(b"\x00\x01 nonsense\r\n\r\n"), 400);
        assert_eq!(refused(&[b'a'; MAX_HEAD]), 431, "a method that never ends");
        let long = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; MAX_HEAD]].concat();
        assert_eq!(refused(&long), 431);
        let (request, _) = complete(b"GET /api/stats HTTP/1.0\r\n\r\n");
        assert!(!request.keep_alive);
    }

    #[test]
    fn replies_are_json_and_a_401_challenges() {
        let reply = Reply::error(401, "no\nkey").encode(true);
        let text = String::from_utf8(reply).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(
            text.contains("WWW-Authenticate: Bearer\r\n") && text.contains("Content-Type: application/json")
        );
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no key\"}\n"), "{text}");
    }
}
