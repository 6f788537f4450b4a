//! Which web origins may open a WebSocket to this server.
//!
//! Browsers attach cookies and credentials to a WebSocket handshake from any page, and the
//! same-origin policy does not apply to WebSockets, so any site a user visits could otherwise
//! talk to the chat as that user (cross-site WebSocket hijacking). Browsers always send
//! `Origin`; the server accepts it when it names this server itself (the `Host` the browser
//! connected to) or an origin listed with `--allowed-origins`. Terminal clients and libraries
//! that send no `Origin` are not browsers acting for a user, and are accepted.

/// The `--allowed-origins` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allow_any: bool,
    /// Normalised `scheme://host:port` strings.
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// Builds the policy from `--allowed-origins` entries: `*`, or origins such as
    /// `https://chat.example.com` or `http://localhost:8080`.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in entries {
            let entry = entry.trim();
            if entry == "*" {
                policy.allow_any = true;
                continue;
            }
            let origin = Origin::parse(entry.trim_end_matches('/')).ok_or_else(|| {
                format!("--allowed-origins: {entry:?} is not an origin like https://chat.example.com or *")
            })?;
            policy.allowed.push(origin.normalised());
        }
        Ok(policy)
    }

    /// Whether a handshake with these `Origin` and `Host` header values may proceed. `secure`:
    /// the handshake came over TLS, so the server's own origin is `https://HOST` and a page
    /// from `http://HOST` is another site. (Without TLS either scheme is the server's own: a
    /// TLS proxy in front of it serves the page as `https://`.)
    pub fn permits(&self, origin: Option<&str>, host: &str, secure: bool) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.allow_any {
            return true;
        }
        // `Origin: null` (sandboxed frames, file:// pages) names no site and is refused.
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        let own_scheme = !secure || origin.scheme.eq_ignore_ascii_case("https");
        (own_scheme && origin.matches_host(host)) || self.allowed.contains(&origin.normalised())
    }
}

/// A parsed `scheme://host[:port]`.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl<'a> Origin<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        let default_port = default_port(scheme)?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_host_port(authority)?;
        Some(Self { scheme, host, port: port.unwrap_or(default_port) })
    }

    fn normalised(&self) -> String {
        format!("{}://{}:{}", self.scheme.to_ascii_lowercase(), self.host.to_ascii_lowercase(), self.port)
    }

    /// The browser reached this server at `host` (the `Host` header) from a page of this origin.
    fn matches_host(&self, host: &str) -> bool {
        let Some((host_name, host_port)) = split_host_port(host.trim()) else {
            return false;
        };
        let host_port = host_port.or_else(|| default_port(self.scheme));
        host_name.eq_ignore_ascii_case(self.host) && host_port == Some(self.port)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        (v6, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(port) => Some((host, Some(port.parse().ok()?))),
        None => Some((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn same_origin_is_allowed_by_default() {
        let default = policy(&[]);
        assert!(default.permits(Some("http://127.0.0.1:9001"), "127.0.0.1:9001", false));
        assert!(default.permits(Some("http://Chat.Example.com"), "chat.example.com:80", false));
        assert!(default.permits(Some("https://chat.example.com"), "chat.example.com", false));
        assert!(default.permits(Some("http://[::1]:9001"), "[::1]:9001", false));
    }

    #[test]
    fn other_origins_are_refused_by_default() {
        let default = policy(&[]);
        assert!(!default.permits(Some("http://evil.example"), "127.0.0.1:9001", false));
        assert!(!default.permits(Some("http://127.0.0.1:9002"), "127.0.0.1:9001", false));
        // Over TLS the server's own origin is https://HOST: an http:// page is another site.
        assert!(default.permits(Some("https://127.0.0.1:9001"), "127.0.0.1:9001", true));
        assert!(default.permits(Some("https://chat.example.com"), "chat.example.com", true));
        assert!(!default.permits(Some("http://127.0.0.1:9001"), "127.0.0.1:9001", true));
        assert!(!default.permits(Some("https://chat.example.com"), "chat.example.com:80", false));
        assert!(!default.permits(Some("null"), "127.0.0.1:9001", false));
        assert!(!default.permits(Some("http://user@127.0.0.1:9001"), "127.0.0.1:9001", false));
    }

    #[test]
    fn clients_without_an_origin_are_allowed() {
        assert!(policy(&[]).permits(None, "anything", false));
    }

    #[test]
    fn listed_origins_and_the_wildcard_are_allowed() {
        let listed = policy(&["https://chat.example.com/", "http://localhost:3000"]);
        assert!(listed.permits(Some("https://chat.example.com"), "backend:9001", false));
        assert!(listed.permits(Some("https://chat.example.com:443"), "backend:9001", false));
        assert!(listed.permits(Some("http://LOCALHOST:3000"), "backend:9001", false));
        assert!(!listed.permits(Some("http://chat.example.com"), "backend:9001", false));
        assert!(policy(&["*"]).permits(Some("http://anywhere.example"), "backend:9001", false));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["chat.example.com", "ftp://x", "https://", "https://x/path", "https://x:99999"] {
            assert!(OriginPolicy::new(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
