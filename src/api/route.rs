//! What each API request means, with no IO: [`route`] turns a request into a reply at once (an
//! error, mostly) or into a call for the chat; [`answer`] turns the chat's answer into the
//! reply. The endpoint (`endpoint.rs`) only moves their bytes.
//!
//! The admin page's files come first, to anyone (`admin.rs`). Then the order of the checks is
//! the order of the statuses: a path outside `/api/` is 404, then
//! every `/api/` request needs a key (401, so that without one nothing is learnt, not even
//! which paths exist), then the path (404), the method (405 with `Allow`), and the parameters
//! (400, naming the one that is wrong).

use serde_json::{json, Value};

use super::keys::ApiKeys;
use super::wire::{Reply, Request};
use crate::chat::api::{ApiAnswer, ApiCall};

/// The API's endpoints, for counting and for shaping the chat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Stats,
    Rooms,
    Presence,
}

impl Endpoint {
    /// Every endpoint, with its path and the one method it answers.
    pub const ALL: [(Endpoint, &'static str, &'static str); 3] = [
        (Endpoint::Stats, "/api/stats", "GET"),
        (Endpoint::Rooms, "/api/rooms", "GET"),
        (Endpoint::Presence, "/api/presence", "GET"),
    ];
}

/// What a request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Answered at once.
    Reply(Reply),
    /// A call for the chat, answered with [`answer`] once the chat has.
    Ask(Endpoint, ApiCall),
}

/// What this process knows that the chat does not, for `/api/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Local {
    /// Messages this process received from its clients since it started.
    pub messages: u64,
    /// With `--redis`: whether the link to the other processes is up.
    pub linked: Option<bool>,
}

/// What `request` comes to, given the keys in force.
pub fn route(request: &Request, keys: &ApiKeys) -> Routed {
    // The admin page's files need no key: the page asks for one (`admin.rs`).
    if let Some(reply) = super::admin::serve(request) {
        return Routed::Reply(reply);
    }
    if !request.path.starts_with("/api/") {
        return Routed::Reply(Reply::error(404, "unknown path: the API is under /api/"));
    }
    if !authorized(request, keys) {
        return Routed::Reply(Reply::error(401, "missing or wrong API key (Authorization: Bearer KEY)"));
    }
    let Some(&(endpoint, _, method)) = Endpoint::ALL.iter().find(|(_, path, _)| *path == request.path) else {
        return Routed::Reply(Reply::error(404, "unknown path"));
    };
    if request.method != method {
        let reply = Reply { allow: Some(method), ..Reply::error(405, format!("only {method} here")) };
        return Routed::Reply(reply);
    }
    let call = match endpoint {
        Endpoint::Stats | Endpoint::Rooms => ApiCall::Rooms,
        Endpoint::Presence => match required(&request.query, "room") {
            Ok(room) => ApiCall::Presence { room },
            Err(reply) => return Routed::Reply(reply),
        },
    };
    Routed::Ask(endpoint, call)
}

/// The reply to `endpoint`'s call, from the chat's answer.
pub fn answer(endpoint: Endpoint, answer: ApiAnswer, local: Local) -> Reply {
    match (endpoint, answer) {
        (Endpoint::Stats, ApiAnswer::Rooms { total, members, .. }) => {
            let mut stats = json!({ "connections": members, "rooms": total, "messages": local.messages });
            if let Some(linked) = local.linked {
                stats["cluster"] = Value::from(if linked { "linked" } else { "down" });
            }
            Reply::ok(stats)
        }
        (_, ApiAnswer::Rooms { rooms, total, .. }) => {
            let rooms: Vec<Value> =
                rooms.iter().map(|(room, members)| json!({ "room": &**room, "members": members })).collect();
            Reply::ok(json!({ "rooms": rooms, "total": total }))
        }
        (_, ApiAnswer::Presence { room, members, total }) => {
            let members: Vec<&str> = members.iter().map(|nick| &**nick).collect();
            Reply::ok(json!({ "room": &*room, "members": members, "total": total }))
        }
        (_, ApiAnswer::NoSuchRoom) => Reply::error(404, "no such room"),
    }
}

/// Whether the request carries one of the keys.
fn authorized(request: &Request, keys: &ApiKeys) -> bool {
    let Some(value) = &request.authorization else { return false };
    let Some(key) = value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer ")) else {
        return false;
    };
    keys.accepts(key.trim_ascii())
}

/// Query parameter `name`, which must be there: 400 naming it otherwise.
fn required(query: &str, name: &str) -> Result<String, Reply> {
    param(query, name)?.ok_or_else(|| Reply::error(400, format!("{name}: missing")))
}

/// Query parameter `name`, `%XX` escapes decoded (a `+` is kept as is: private rooms start
/// with one).
fn param(query: &str, name: &str) -> Result<Option<String>, Reply> {
    let Some(raw) = query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')) else {
        return Ok(None);
    };
    let bad = || Reply::error(400, format!("{name}: bad %-escape or not UTF-8"));
    let (bytes, mut decoded) = (raw.as_bytes(), Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
            decoded.push(hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad)?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{parse, Parsed};

    const KEY: &str = "0123456789abcdef";

    fn keys() -> ApiKeys {
        ApiKeys::from_text(std::path::Path::new("keys"), KEY).unwrap()
    }

    fn routed(head: &str) -> Routed {
        let Parsed::Complete(request, _) = parse(head.as_bytes()) else { panic!("{head}") };
        route(&request, &keys())
    }

    fn status(head: &str) -> u16 {
        match routed(head) {
            Routed::Reply(reply) => reply.status,
            Routed::Ask(..) => 200,
        }
    }

    #[test]
    fn keys_first_then_paths_then_methods_then_parameters() {
        let auth = format!("Authorization: Bearer {KEY}\r\n");
        assert_eq!(status("GET /metrics HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /api/nothing HTTP/1.1\r\n\r\n"), 401);
        assert_eq!(status("GET /api/stats HTTP/1.1\r\nAuthorization: Bearer wrong-key-0123456\r\n\r\n"), 401);
        assert_eq!(status(&format!("GET /api/nothing HTTP/1.1\r\n{auth}\r\n")), 404);
        let Routed::Reply(reply) = routed(&format!("DELETE /api/rooms HTTP/1.1\r\n{auth}\r\n")) else {
            panic!()
        };
        assert_eq!((reply.status, reply.allow), (405, Some("GET")));
        let Routed::Reply(reply) = routed(&format!("GET /api/presence HTTP/1.1\r\n{auth}\r\n")) else {
            panic!()
        };
        assert_eq!((reply.status, reply.body.as_str()), (400, r#"{"error":"room: missing"}"#));
        let presence = routed(&format!("GET /api/presence?x=1&room=%2Bops HTTP/1.1\r\n{auth}\r\n"));
        assert_eq!(presence, Routed::Ask(Endpoint::Presence, ApiCall::Presence { room: "+ops".into() }));
        assert_eq!(status(&format!("GET /api/presence?room=%zz HTTP/1.1\r\n{auth}\r\n")), 400);
        assert_eq!(status(&format!("GET /api/presence?room=%+1 HTTP/1.1\r\n{auth}\r\n")), 400);
        assert_eq!(status(&format!("GET /api/presence?room=a% HTTP/1.1\r\n{auth}\r\n")), 400);
    }
}
