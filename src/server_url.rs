//! The server address both clients take, `wschat-client` and `wschat-bench`: a `ws://` or
//! `wss://` URL, `HOST:PORT`, or a bare `HOST` (then `ws://` and port 9001, the server's
//! default). [`ServerUrl::parse`] is their one parser: clap calls it, so an address that can
//! never work is a usage error (exit 2) naming the forms there are, before anything runs.

use std::fmt;

use tungstenite::client::IntoClientRequest;

/// The port an address without a scheme gets when it names none: the server's default.
pub const DEFAULT_PORT: u16 = 9001;

/// The forms an address may take, for every parse error.
const FORMS: &str = "give ws://HOST:PORT/, wss://HOST:PORT/, HOST:PORT or HOST";

/// A server's address, checked: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// What to request: the scheme, the authority as given (port 9001 added to an address
    /// without scheme or port), a path (`/` if none) and the query, if any.
    url: String,
    /// `wss://`: TLS.
    pub secure: bool,
    /// The host to resolve and, under TLS, the name the certificate must cover (an IPv6
    /// address without its brackets).
    pub host: String,
    /// The port given, or the scheme's (80, 443).
    pub port: u16,
    /// The authority as given, for the `Host` header.
    pub authority: String,
    /// The path and query, for the request line.
    pub path: String,
}

impl ServerUrl {
    /// Reads an address in any of the forms; the error says what is wrong and which forms
    /// there are.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            None => (None, text),
            Some((scheme @ ("ws" | "wss"), rest)) => (Some(scheme), rest),
            Some((scheme, _)) => return Err(format!("{scheme}:// is not a WebSocket address: {FORMS}")),
        };
        let (authority, path) = rest.find(['/', '?']).map_or((rest, ""), |at| rest.split_at(at));
        let (host_as_given, port) = split_port(authority);
        let host = host_as_given.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(format!("no host in {text:?}: {FORMS}"));
        }
        let secure = scheme == Some("wss");
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port > 0)
                .ok_or_else(|| format!("{port:?} is not a port (1 to 65535): {FORMS}"))?,
            None if scheme.is_none() => DEFAULT_PORT,
            None if secure => 443,
            None => 80,
        };
        // A URL keeps its authority as written (its scheme's port stays implied); an address
        // without a scheme names the port it means.
        let authority = match scheme {
            None => format!("{host_as_given}:{port}"),
            Some(_) => authority.to_string(),
        };
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let url = format!("{}://{authority}{path}", scheme.unwrap_or("ws"));
        // Whatever else is wrong (a space, a stray character) the request would refuse.
        url.as_str().into_client_request().map_err(|e| format!("not an address ({e}): {FORMS}"))?;
        Ok(Self { url, secure, host: host.to_string(), port, authority, path })
    }

    /// The URL to request, with scheme, port (where it was added) and path.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `host[:port]` as its host (an IPv6 address in its brackets) and the port's text, if any.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let host_end = authority.rfind(']').map_or(0, |bracket| bracket + 1);
    match authority[host_end..].find(':') {
        Some(colon) => (&authority[..host_end + colon], Some(&authority[host_end + colon + 1..])),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, bool, String, u16, String, String) {
        let url = ServerUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (url.to_string(), url.secure, url.host, url.port, url.authority, url.path)
    }

    #[test]
    fn every_form_becomes_a_full_url() {
        let p = |s: &str| s.to_string();
        assert_eq!(
            parts("127.0.0.1"),
            (p("ws://127.0.0.1:9001/"), false, p("127.0.0.1"), 9001, p("127.0.0.1:9001"), p("/"))
        );
        assert_eq!(parts("localhost:9002").0, "ws://localhost:9002/");
        assert_eq!(parts("localhost/echo").0, "ws://localhost:9001/echo");
        assert_eq!(parts("[::1]"), (p("ws://[::1]:9001/"), false, p("::1"), 9001, p("[::1]:9001"), p("/")));
        assert_eq!(parts("ws://example.com").0, "ws://example.com/", "a URL keeps its scheme's port");
        assert_eq!(parts("ws://example.com").3, 80);
        assert_eq!(
            parts("wss://chat.example.com/room?x=1"),
            (
                p("wss://chat.example.com/room?x=1"),
                true,
                p("chat.example.com"),
                443,
                p("chat.example.com"),
                p("/room?x=1")
            )
        );
        assert_eq!(parts("ws://h:1?x=1").0, "ws://h:1/?x=1");
    }

    #[test]
    fn what_cannot_be_an_address_says_which_forms_there_are() {
        for (text, why) in [
            ("http://127.0.0.1:9001/", "http:// is not a WebSocket address"),
            ("127.0.0.1:port", "not a port"),
            ("ws://h:/", "not a port"),
            ("ws://a b/", "not an address"),
            ("127.0.0.1:70000", "not a port"),
            ("ws://h:0/", "not a port"),
            ("ws:///path", "no host"),
            ("", "no host"),
            ("ws://user@h/", "no host"),
        ] {
            let error = ServerUrl::parse(text).expect_err(text);
            assert!(error.contains(why) && error.contains("HOST:PORT or HOST"), "{text}: {error}");
        }
    }
}
