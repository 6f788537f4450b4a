//! Where Redis is: the `--redis` URL, parsed once at start, shown without its password.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Where Redis is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    /// AUTH's arguments: the password, or the user and the password.
    pub auth: Option<(Option<String>, String)>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never a password in a log line.
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses `redis://HOST[:PORT][/DB]`, with `[USER]:PASSWORD@` before the host if Redis
    /// asks for one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let example = "try redis://127.0.0.1:6379 or redis://:PASSWORD@HOST:6379/0";
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("not a redis:// URL: {text:?} ({example})"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => {
                let (user, password) = credentials
                    .split_once(':')
                    .ok_or_else(|| format!("credentials must be USER:PASSWORD or :PASSWORD ({example})"))?;
                let user = (!user.is_empty()).then(|| user.to_string());
                (Some((user, password.to_string())), rest)
            }
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hostport, "")) => (hostport, 0),
            Some((hostport, db)) => {
                (hostport, db.parse().map_err(|_| format!("not a database number: {db:?} ({example})"))?)
            }
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                (host, port.parse().map_err(|_| format!("not a port: {port:?} ({example})"))?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("no host in {text:?} ({example})"));
        }
        Ok(Self { host: host.to_string(), port, db, auth })
    }

    /// The address to connect to (a name is looked up once, at start).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} names no address", self.host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_the_way_people_write_them() {
        let url = |text: &str| RedisUrl::parse(text);
        let plain = url("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.db, plain.auth.clone()),
            ("127.0.0.1", 6379, 0, None)
        );
        assert_eq!(url("redis://redis").unwrap().port, 6379);
        assert_eq!(url("redis://redis:7000/3").unwrap().db, 3);
        assert_eq!(url("redis://[::1]:7000").unwrap().host, "::1");
        let auth = url("redis://:s3cret@h:1/2").unwrap();
        assert_eq!(auth.auth, Some((None, "s3cret".to_string())));
        assert_eq!(auth.to_string(), "redis://h:1/2", "no password when shown");
        assert_eq!(url("redis://me:pw@h").unwrap().auth, Some((Some("me".into()), "pw".into())));
        for bad in ["http://h", "redis://", "redis://h:port", "redis://h/db"] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }
}
