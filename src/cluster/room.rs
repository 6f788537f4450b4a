//! A room in Redis: its key names, the Lua scripts that change it, and the payloads published
//! on its channel. Defined once here for the processes that write them and those that read.
//!
//! For room key `K` (the case-folded name):
//! - `wschat:{K}:meta`: a hash with `epoch`, `seq` (the last sequence given out) and `display`;
//! - `wschat:{K}:log`: a stream of (at least) the last `--history` messages, entry id `SEQ-1`,
//!   field `m`;
//! - `wschat:DB:{K}`: the channel its events are published on (DB: the URL's database).
//!
//! The braces are Redis Cluster's hash tag: a room's keys and channel share one slot, so the
//! script may touch them together and a sharded channel lives on the node that has its keys.
//!
//! A payload on the channel starts with its kind: `m EPOCH SEQ ORIGIN JSON` (a message, from
//! the script), `e ORIGIN JSON` (an event in its JSON-mode form), `b ORIGIN BYTES` (a binary
//! message). ORIGIN is `PID:CLIENT`, the process and connection it came from (`-` for none):
//! the sender's process knows its own by it, so it can tell when a client's message is back.

use std::borrow::Cow;
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::broker::Notice;
use crate::chat::history::Kind;
use crate::chat::{Event, Stored};

/// How long an idle room's epoch, counter and history stay in Redis: after a month without a
/// message a room starts a new epoch.
pub const ROOM_TTL_SECS: u64 = 30 * 24 * 3600;

pub fn meta_key(room: &str) -> String {
    format!("wschat:{{{room}}}:meta")
}

pub fn log_key(room: &str) -> String {
    format!("wschat:{{{room}}}:log")
}

/// The room's channel. Channels, unlike keys, are shared by all of a Redis's databases, so the
/// name says which one the cluster uses.
pub fn channel(db: u32, room: &str) -> String {
    format!("wschat:{db}:{{{room}}}")
}

/// The room key a channel of database `db` belongs to.
pub fn room_of_channel(db: u32, channel: &[u8]) -> Option<&str> {
    let channel = std::str::from_utf8(channel).ok()?;
    channel.strip_prefix("wschat:")?.strip_prefix(&format!("{db}:{{"))?.strip_suffix('}')
}

/// Lua that both room scripts start with: the room's epoch, started (with an empty log) if the
/// room has none. KEYS: meta, log. Uses `EPOCH_ARG` (the epoch if new) and `DISPLAY_ARG`.
const EPOCH_PRELUDE: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[EPOCH_ARG]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'display', ARGV[DISPLAY_ARG])
end
"#;

fn with_prelude(epoch_arg: usize, display_arg: usize, body: &str) -> String {
    let prelude = EPOCH_PRELUDE
        .replace("EPOCH_ARG", &epoch_arg.to_string())
        .replace("DISPLAY_ARG", &display_arg.to_string());
    format!("{prelude}{body}")
}

/// Numbers, keeps and publishes a room message, atomically. The log is trimmed to about the
/// history limit (`MAXLEN ~`: whole stream nodes, so a few dozen more may stay), which halves
/// the script's cost against exact trimming (7.5 against 15 us per call, Redis's own count);
/// each process's mirror keeps exactly `--history`.
/// KEYS: meta, log. ARGV: channel, epoch if the room is new, display, history limit, TTL,
/// body, "1" for sharded pub/sub, origin, the log entry a delete removes (or ""). Returns
/// {sequence number, epoch}.
pub fn say_script() -> String {
    with_prelude(
        2,
        3,
        r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if ARGV[9] ~= '' then
  -- A delete: the message leaves the log, and so do the edits of it (they hold its text).
  local target = tonumber(string.match(ARGV[9], '^(%d+)'))
  redis.call('XDEL', KEYS[2], ARGV[9])
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[9], '+')) do
    local ok, body = pcall(cjson.decode, entry[2][2])
    if ok and type(body) == 'table' and body.edit == target then
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
end
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-1', 'm', ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local payload = 'm ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[8] .. ' ' .. ARGV[6]
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[1], payload)
else
  redis.call('PUBLISH', ARGV[1], payload)
end
return {seq, epoch}
"#,
    )
}

/// A room's history as Redis holds it, starting its epoch if it has none.
/// KEYS: meta, log. ARGV: epoch if the room is new, display, TTL, history limit.
/// Returns {epoch, last seq, display, the newest `limit` entries of the log, newest first}.
pub fn load_script() -> String {
    with_prelude(
        1,
        2,
        r#"
redis.call('EXPIRE', KEYS[1], ARGV[3])
local meta = redis.call('HMGET', KEYS[1], 'seq', 'display')
local entries = {}
if tonumber(ARGV[4]) > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[4])
end
return {epoch, meta[1], meta[2], entries}
"#,
    )
}

/// A room's history as Redis holds it, for a look from outside (the HTTP API's `history`):
/// the load script's answer without starting anything, or nil for a room Redis does not know.
/// KEYS: meta, log. ARGV: how many entries at most.
pub fn history_script() -> String {
    r#"
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'display')
if not meta[1] then
  return false
end
local entries = {}
if tonumber(ARGV[1]) > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])
end
return {meta[1], meta[2], meta[3], entries}
"#
    .to_string()
}

/// A script's SHA-1, hex: its name for EVALSHA.
pub fn script_sha(script: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, script.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A message as kept in the log and published (the sequence and epoch are the script's).
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    // Borrowed where the JSON has no escapes, owned where it has (a quote, a newline).
    #[serde(borrow)]
    from: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
    ts: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    action: bool,
    /// An application's message (the HTTP API). Both flags are booleans rather than one kind,
    /// so that a process of an older version reads the others' messages as it always did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    api: bool,
    /// The members it names (`@NICK`), as held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<Cow<'a, str>>,
    /// An edit (`/edit`) of message `edit`, or the delete (`/delete`) of message `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<u64>,
    /// The author number of a connection that did not sign in (see `Stored::author`).
    #[serde(default, skip_serializing_if = "is_zero")]
    author: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The body of a room message, before Redis numbers it.
pub fn say_body(message: &Stored) -> String {
    let (from, text) = (Cow::Borrowed(&*message.from), Cow::Borrowed(&*message.text));
    // Serializing borrowed strings and integers cannot fail.
    let (action, api) = (message.kind == Kind::Action, message.kind == Kind::Api);
    let mentions = message.mentions.iter().map(|nick| Cow::Borrowed(&**nick)).collect();
    let (edit, delete) = match message.kind {
        Kind::Edit { target } => (Some(target), None),
        Kind::Delete { target } => (None, Some(target)),
        _ => (None, None),
    };
    let body =
        Body { from, text, ts: message.ts, action, api, mentions, edit, delete, author: message.author };
    serde_json::to_string(&body).unwrap_or_default()
}

/// A message back from its body and the sequence Redis gave it.
pub fn stored(seq: u64, body: &[u8]) -> Option<Stored> {
    let body: Body = serde_json::from_slice(body).ok()?;
    Some(Stored {
        author: body.author,
        edited: false,
        seq,
        ts: body.ts,
        from: Rc::from(&*body.from),
        text: body.text.into(),
        mentions: body.mentions.iter().map(|nick| Rc::from(&**nick)).collect(),
        kind: match (body.action, body.api, body.edit, body.delete) {
            (true, ..) => Kind::Action,
            (_, true, ..) => Kind::Api,
            (_, _, Some(target), _) => Kind::Edit { target },
            (.., Some(target)) => Kind::Delete { target },
            _ => Kind::Line,
        },
    })
}

/// The payload of an event that is not kept.
pub fn event_payload(origin: &str, event: &str) -> Vec<u8> {
    [b"e ", origin.as_bytes(), b" ", event.as_bytes()].concat()
}

/// The payload of a binary message.
pub fn binary_payload(origin: &str, data: &[u8]) -> Vec<u8> {
    [b"b ", origin.as_bytes(), b" ", data].concat()
}

/// The ORIGIN of a payload: `PID:CLIENT`, or `-` when it is nobody's.
pub fn origin(pid: &str, client: Option<usize>) -> String {
    client.map_or_else(|| "-".to_string(), |client| format!("{pid}:{client}"))
}

/// What a payload on room `room`'s channel says, and its ORIGIN; None if it is not one of
/// ours.
pub fn parse_payload(room: &str, payload: &Bytes) -> Option<(Notice, Bytes)> {
    let room: Rc<str> = Rc::from(room);
    let (kind, rest) = (payload.get(..2)?, payload.slice(2..));
    let word = |rest: &Bytes| -> Option<(Bytes, Bytes)> {
        let end = rest.iter().position(|&b| b == b' ')?;
        Some((rest.slice(..end), rest.slice(end + 1..)))
    };
    match kind {
        b"m " => {
            let (epoch, rest) = word(&rest)?;
            let (seq, rest) = word(&rest)?;
            let (origin, body) = word(&rest)?;
            let epoch = Rc::from(std::str::from_utf8(&epoch).ok()?);
            let message = stored(std::str::from_utf8(&seq).ok()?.parse().ok()?, &body)?;
            Some((Notice::Message { room, epoch, message, origin: None }, origin))
        }
        b"e " => {
            let (origin, rest) = word(&rest)?;
            let event = Event::from_json(std::str::from_utf8(&rest).ok()?)?;
            // Only what `Request::Announce` sends: a room message must come numbered.
            matches!(
                event,
                Event::Joined { .. }
                    | Event::Left { .. }
                    | Event::NickChanged { .. }
                    | Event::BinaryFrom { .. }
                    | Event::Typing { .. }
            )
            .then_some((Notice::Event { room, event, origin: None }, origin))
        }
        b"b " => {
            let (origin, data) = word(&rest)?;
            Some((Notice::Binary { room, data }, origin))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_s_keys_and_channel_share_its_hash_tag() {
        assert_eq!(meta_key("lobby"), "wschat:{lobby}:meta");
        assert_eq!(log_key("lobby"), "wschat:{lobby}:log");
        assert_eq!(room_of_channel(0, channel(0, "ünï").as_bytes()), Some("ünï"));
        assert_eq!(room_of_channel(1, channel(0, "x").as_bytes()), None, "another database's room");
        assert_eq!(room_of_channel(0, b"other:{x}"), None);
    }

    #[test]
    fn payloads_read_back_as_what_was_sent() {
        let said = Stored {
            author: 0,
            edited: false,
            seq: 0,
            ts: 7,
            from: Rc::from("ann"),
            text: "hi \"there\"\n".into(),
            kind: Kind::Action,
            mentions: Box::new([Rc::from("bob")]),
        };
        let payload = Bytes::from(format!("m ab12 5 p1:3 {}", say_body(&said)));
        let Some((Notice::Message { epoch, message, .. }, sent_by)) = parse_payload("lobby", &payload) else {
            panic!("not a message")
        };
        assert_eq!(
            (&*epoch, message.seq, &*message.from, &*message.text, message.ts, &sent_by[..]),
            ("ab12", 5, "ann", "hi \"there\"\n", 7, &b"p1:3"[..]),
            "escapes in the text survive the trip"
        );
        assert_eq!(message.kind, Kind::Action);
        assert_eq!(&*message.mentions, [Rc::from("bob")]);
        let joined = Event::Joined { room: Rc::from("Lobby"), nick: Rc::from("bob") };
        let payload = Bytes::from(event_payload(&origin("p1", Some(4)), &joined.json().unwrap()));
        assert_eq!(
            parse_payload("lobby", &payload),
            Some((
                Notice::Event { room: Rc::from("lobby"), event: joined, origin: None },
                Bytes::from_static(b"p1:4")
            ))
        );
        let payload = Bytes::from(binary_payload(&origin("p1", None), &[0, 1, 2]));
        assert_eq!(
            parse_payload("lobby", &payload),
            Some((
                Notice::Binary { room: Rc::from("lobby"), data: Bytes::from_static(&[0, 1, 2]) },
                Bytes::from_static(b"-")
            ))
        );
        let notice = Event::notice("not a room event").json().unwrap();
        assert_eq!(parse_payload("lobby", &Bytes::from(event_payload("-", &notice))), None);
        assert_eq!(parse_payload("lobby", &Bytes::from_static(b"m x")), None);
    }

    #[test]
    fn script_names_are_their_sha1() {
        assert_eq!(script_sha(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
