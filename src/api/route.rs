//! What each API request means, with no IO: [`route`] turns a request into a reply at once (an
//! error, mostly) or into a call for the chat; [`answer`] turns the chat's answer into the
//! reply. The endpoint (`endpoint.rs`) only moves their bytes.
//!
//! The admin page's files come first, to anyone (`admin.rs`). Then the order of the checks is
//! the order of the statuses: a path outside `/api/` is 404, then
//! every `/api/` request needs a key (401, so that without one nothing is learnt, not even
//! which paths exist), then the path (404), the method (405 with `Allow`), and the parameters
//! (400, naming the one that is wrong: `fields.rs`).

use serde_json::{json, Value};

use super::fields::{self, Body};
use super::keys::ApiKeys;
use super::wire::{Reply, Request};
use crate::chat::api::{ApiAnswer, ApiCall, MAX_HISTORY};
use crate::chat::history::Kind;

/// The API's endpoints, for counting and for shaping the chat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Stats,
    Rooms,
    Presence,
    History,
    Bans,
    Publish,
    Send,
    Kick,
    Ban,
    Unban,
}

impl Endpoint {
    /// Every endpoint, with its path and the one method it answers.
    pub const ALL: [(Endpoint, &'static str, &'static str); 10] = [
        (Endpoint::Stats, "/api/stats", "GET"),
        (Endpoint::Rooms, "/api/rooms", "GET"),
        (Endpoint::Presence, "/api/presence", "GET"),
        (Endpoint::History, "/api/history", "GET"),
        (Endpoint::Bans, "/api/bans", "GET"),
        (Endpoint::Publish, "/api/publish", "POST"),
        (Endpoint::Send, "/api/send", "POST"),
        (Endpoint::Kick, "/api/kick", "POST"),
        (Endpoint::Ban, "/api/ban", "POST"),
        (Endpoint::Unban, "/api/unban", "POST"),
    ];

    /// Its name in the metrics (the path's last part).
    pub fn name(self) -> &'static str {
        let (_, path, _) = Self::ALL.iter().find(|(e, _, _)| *e == self).expect("every endpoint is listed");
        path.trim_start_matches("/api/")
    }
}

/// What a request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Answered at once; the endpoint, if the request named one.
    Reply(Option<Endpoint>, Reply),
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

/// What `request` comes to, given the keys in force and the longest text a message may have
/// (`--max-message-size`).
pub fn route(request: &Request, keys: &ApiKeys, max_text: usize) -> Routed {
    // The admin page's files need no key: the page asks for one (`admin.rs`).
    if let Some(reply) = super::admin::serve(request) {
        return Routed::Reply(None, reply);
    }
    if !request.path.starts_with("/api/") {
        return Routed::Reply(
            None,
            Reply::error(404, "unknown path: the API is under /api/, its page at /admin"),
        );
    }
    if !authorized(request, keys) {
        let reply = Reply::error(401, "missing or wrong API key (Authorization: Bearer KEY)");
        return Routed::Reply(None, reply);
    }
    let Some(&(endpoint, _, method)) = Endpoint::ALL.iter().find(|(_, path, _)| *path == request.path) else {
        return Routed::Reply(None, Reply::error(404, "unknown path"));
    };
    if request.method != method {
        let reply = Reply { allow: Some(method), ..Reply::error(405, format!("only {method} here")) };
        return Routed::Reply(Some(endpoint), reply);
    }
    match call(endpoint, request, max_text) {
        Ok(call) => Routed::Ask(endpoint, call),
        Err(reply) => Routed::Reply(Some(endpoint), reply),
    }
}

/// The chat's call a request to `endpoint` makes, its parameters checked.
fn call(endpoint: Endpoint, request: &Request, max_text: usize) -> Result<ApiCall, Reply> {
    let query = request.query.as_str();
    let mut body = match request.method.as_str() {
        "POST" => Body::parse(&request.body)?,
        _ => Body::parse(b"{}")?,
    };
    let call = match endpoint {
        Endpoint::Stats | Endpoint::Rooms => ApiCall::Rooms,
        Endpoint::Presence => ApiCall::Presence { room: fields::required(query, "room")? },
        Endpoint::History => ApiCall::History {
            room: fields::required(query, "room")?,
            since: fields::message_id(query, "since")?,
            limit: fields::count(query, "limit", 100, MAX_HISTORY)?,
        },
        Endpoint::Bans => ApiCall::Bans,
        Endpoint::Publish => ApiCall::Publish {
            room: body.room()?,
            text: body.text(max_text)?,
            from: body.nick("from", Some(DEFAULT_FROM))?,
        },
        Endpoint::Send => ApiCall::Send {
            nick: body.nick("nick", None)?,
            text: body.text(max_text)?,
            from: body.nick("from", Some(DEFAULT_FROM))?,
        },
        Endpoint::Kick => ApiCall::Kick { nick: body.nick("nick", None)?, reason: body.reason()? },
        Endpoint::Ban => ApiCall::Ban {
            nick: body.nick("nick", None)?,
            duration: body.duration()?,
            reason: body.reason()?,
        },
        Endpoint::Unban => ApiCall::Unban { nick: body.nick("nick", None)? },
    };
    body.done()?;
    Ok(call)
}

/// Who an application's message is from when it does not say.
pub const DEFAULT_FROM: &str = "server";

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
        (_, ApiAnswer::NotFound(why)) => Reply::error(404, why),
        (_, ApiAnswer::Unavailable(why)) => Reply::error(503, why),
        (_, ApiAnswer::Unreadable(why)) => Reply::error(502, why),
        (_, ApiAnswer::Published { id }) => Reply::ok(json!({ "id": id.to_string() })),
        (Endpoint::Send, ApiAnswer::Reached { reached }) => Reply::ok(json!({ "delivered": reached })),
        (_, ApiAnswer::Reached { reached }) => Reply::ok(json!({ "kicked": reached })),
        (_, ApiAnswer::Banned { nick, until_ms, kicked }) => {
            Reply::ok(json!({ "nick": nick, "until": until_ms, "kicked": kicked }))
        }
        (_, ApiAnswer::Unbanned { count }) => Reply::ok(json!({ "unbanned": count })),
        (_, ApiAnswer::Bans(bans)) => {
            let bans: Vec<Value> = bans
                .iter()
                .map(|b| json!({ "nick": b.nick, "until": b.until_ms, "reason": b.reason, "by": b.by }))
                .collect();
            Reply::ok(json!({ "bans": bans }))
        }
        (_, ApiAnswer::History { room, epoch, recovered, messages }) => {
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let mut message = json!({
                        "id": format!("{epoch}:{}", m.seq), "from": &*m.from, "text": &*m.text, "ts": m.ts
                    });
                    match m.kind {
                        Kind::Action => message["action"] = Value::Bool(true),
                        Kind::Api => message["api"] = Value::Bool(true),
                        Kind::Edit { target } => message["edit"] = Value::from(format!("{epoch}:{target}")),
                        Kind::Delete { target } => {
                            message["delete"] = Value::from(format!("{epoch}:{target}"))
                        }
                        Kind::Line => {}
                    }
                    if m.edited {
                        message["edited"] = Value::Bool(true);
                    }
                    message
                })
                .collect();
            Reply::ok(json!({ "room": &*room, "recovered": recovered, "messages": messages }))
        }
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
        route(&request, &keys(), 100)
    }

    fn status(head: &str) -> u16 {
        match routed(head) {
            Routed::Reply(_, reply) => reply.status,
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
        let Routed::Reply(_, reply) = routed(&format!("DELETE /api/rooms HTTP/1.1\r\n{auth}\r\n")) else {
            panic!()
        };
        assert_eq!((reply.status, reply.allow), (405, Some("GET")));
        let Routed::Reply(_, reply) = routed(&format!("GET /api/presence HTTP/1.1\r\n{auth}\r\n")) else {
            panic!()
        };
        assert_eq!((reply.status, reply.body.as_str()), (400, r#"{"error":"room: missing"}"#));
        let presence = routed(&format!("GET /api/presence?x=1&room=%2Bops HTTP/1.1\r\n{auth}\r\n"));
        assert_eq!(presence, Routed::Ask(Endpoint::Presence, ApiCall::Presence { room: "+ops".into() }));
        assert_eq!(status(&format!("GET /api/presence?room=%zz HTTP/1.1\r\n{auth}\r\n")), 400);
        let post = |path: &str, body: &str| {
            let head = format!("POST {path} HTTP/1.1\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len());
            routed(&head)
        };
        let publish = post("/api/publish", r#"{"room": "Dev", "text": "deploy done"}"#);
        let call =
            ApiCall::Publish { room: "Dev".into(), text: "deploy done".into(), from: DEFAULT_FROM.into() };
        assert_eq!(publish, Routed::Ask(Endpoint::Publish, call));
        let Routed::Reply(Some(Endpoint::Publish), reply) = post("/api/publish", r#"{"room": "Dev"}"#) else {
            panic!()
        };
        assert_eq!(reply.body, r#"{"error":"text: missing"}"#);
        let Routed::Reply(_, reply) = post("/api/ban", r#"{"nick": "bob", "duration": "10m", "why": "x"}"#)
        else {
            panic!()
        };
        assert_eq!(reply.body, r#"{"error":"why: unknown field"}"#);
        assert_eq!(status(&format!("GET /api/history?room=dev&limit=0 HTTP/1.1\r\n{auth}\r\n")), 400);
    }
}
