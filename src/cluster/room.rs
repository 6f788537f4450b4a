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
//! A payload on the channel starts with its kind: `m EPOCH SEQ\nORIGIN JSON\nORIGIN JSON...`
//! (one or more messages, numbered SEQ, SEQ+1, ... by the say script: what a loop turn said in
//! the room, see `batch.rs`), `e ORIGIN JSON` (an event in its JSON-mode form), `b ORIGIN BYTES`
//! (a binary message). A message's JSON has no raw newline (serde_json escapes control
//! characters), so a newline ends it. ORIGIN is `PID:CLIENT`, the process and connection it
//! came from (`-` for none): the sender's process knows its own by it, so it can tell when a
//! client's message is back.

use std::borrow::Cow;
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::broker::Notice;
use crate::chat::history::Kind;
use crate::chat::{Event, Stored};

/// How long an idle room's epoch, counter and history stay in Redis: after a month without a
/// message (less up to an hour: each process renews a room's expiry hourly, `refresh.rs`) a
/// room starts a new epoch.
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

/// Numbers, keeps and publishes one or more messages of a room (what a loop turn said there),
/// atomically: consecutive sequence numbers, one log entry each, one payload on the channel.
/// One call per batch rather than per message is what halves Redis's cost per message under
/// load: the script's fixed part (the call, the epoch, the counter, the TTLs, the publish to
/// every subscribed process) is paid once. The log is trimmed to about the history limit
/// (`MAXLEN ~`: whole stream nodes, so a few dozen more may stay), which halves the cost of an
/// entry against exact trimming; each process's mirror keeps exactly `--history`.
/// KEYS: meta, log. ARGV: channel, epoch if the room is new, display, history limit, "1" to
/// renew the room's expiry (`refresh.rs`; "0": left as it is, unless this is the room's first
/// message), "1" for sharded pub/sub, then for each message its origin, its body and the log
/// entry it removes if it is a delete (or ""). Returns {the first message's sequence number,
/// epoch}.
pub fn say_script() -> String {
    with_prelude(
        2,
        3,
        r#"
local n = (#ARGV - SAY_FIXED_ARGS) / 3
local first = redis.call('HINCRBY', KEYS[1], 'seq', n) - n + 1
local keep = tonumber(ARGV[4]) > 0
-- The payload's lines, for a batch of more than one.
local lines = n > 1 and {'m ' .. epoch .. ' ' .. first} or nil
for i = 0, n - 1 do
  local at = SAY_FIXED_ARGS + 1 + 3 * i
  local deleted = ARGV[at + 2]
  if deleted ~= '' then
    -- A delete: the message leaves the log, and so do the edits of it (they hold its text).
    local target = tonumber(string.match(deleted, '^(%d+)'))
    redis.call('XDEL', KEYS[2], deleted)
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], deleted, '+')) do
      local ok, body = pcall(cjson.decode, entry[2][2])
      if ok and type(body) == 'table' and body.edit == target then
        redis.call('XDEL', KEYS[2], entry[1])
      end
    end
  end
  if keep then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], (first + i) .. '-1', 'm', ARGV[at + 1])
  end
  if lines then
    lines[i + 2] = ARGV[at] .. ' ' .. ARGV[at + 1]
  end
end
-- The month-long expiry, renewed when the caller says so (hourly, `refresh.rs`) or when the
-- room's count starts (by this script or the load script: its log has no expiry yet).
if ARGV[5] ~= '0' or first == 1 then
  if keep then
    redis.call('EXPIRE', KEYS[2], ROOM_TTL_SECS)
  end
  redis.call('EXPIRE', KEYS[1], ROOM_TTL_SECS)
end
-- One message (most calls): one concatenation, no table, as cheap as before batches.
local payload
if lines then
  payload = table.concat(lines, '\n')
else
  payload = 'm ' .. epoch .. ' ' .. first .. '\n' .. ARGV[SAY_FIXED_ARGS + 1] .. ' ' .. ARGV[SAY_FIXED_ARGS + 2]
end
if ARGV[6] == '1' then
  redis.call('SPUBLISH', ARGV[1], payload)
else
  redis.call('PUBLISH', ARGV[1], payload)
end
return {first, epoch}
"#
        .replace("SAY_FIXED_ARGS", &SAY_FIXED_ARGS.to_string())
        .replace("ROOM_TTL_SECS", &ROOM_TTL_SECS.to_string())
        .as_str(),
    )
}

/// The say script's arguments before the first message's (channel to sharded).
pub const SAY_FIXED_ARGS: usize = 6;

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

/// What a payload on room `room`'s channel says, each notice with its ORIGIN, appended to
/// `out` in order (a batch of messages is several); false if some or all of it is not ours
/// (what can be read of a batch is appended: one message's fault is not its neighbours').
pub fn parse_payload(room: &Rc<str>, payload: &Bytes, out: &mut Vec<(Notice, Bytes)>) -> bool {
    let Some((kind, rest)) = payload.get(..2).map(|kind| (kind, payload.slice(2..))) else { return false };
    let one = match kind {
        b"m " => return parse_messages(room, &rest, out),
        b"e " => parse_event(room, &rest),
        b"b " => word(&rest).map(|(origin, data)| (Notice::Binary { room: room.clone(), data }, origin)),
        _ => None,
    };
    one.map(|one| out.push(one)).is_some()
}

/// The first word of `rest` and what follows its space.
fn word(rest: &Bytes) -> Option<(Bytes, Bytes)> {
    let at = rest.iter().position(|&b| b == b' ')?;
    Some((rest.slice(..at), rest.slice(at + 1..)))
}

/// `ORIGIN JSON`: an event, of those `Request::Announce` sends (a room message must come
/// numbered).
fn parse_event(room: &Rc<str>, rest: &Bytes) -> Option<(Notice, Bytes)> {
    let (origin, rest) = word(rest)?;
    let event = Event::from_json(std::str::from_utf8(&rest).ok()?)?;
    matches!(
        event,
        Event::Joined { .. }
            | Event::Left { .. }
            | Event::NickChanged { .. }
            | Event::BinaryFrom { .. }
            | Event::Typing { .. }
    )
    .then_some((Notice::Event { room: room.clone(), event, origin: None }, origin))
}

/// `EPOCH SEQ\nORIGIN JSON[\nORIGIN JSON]...`: the messages numbered SEQ on. False if the
/// head or any message is unreadable (the others are appended, under their own numbers).
fn parse_messages(room: &Rc<str>, rest: &Bytes, out: &mut Vec<(Notice, Bytes)>) -> bool {
    let Some(at) = rest.iter().position(|&b| b == b'\n') else { return false };
    let Some((epoch, first)) = std::str::from_utf8(&rest[..at]).ok().and_then(|head| head.split_once(' '))
    else {
        return false;
    };
    let (epoch, Ok(first)): (Rc<str>, Result<u64, _>) = (Rc::from(epoch), first.parse()) else {
        return false;
    };
    let mut all = true;
    for (seq, line) in (first..).zip(rest[at + 1..].split(|&b| b == b'\n')) {
        let read = line.iter().position(|&b| b == b' ').and_then(|space| {
            let message = stored(seq, &line[space + 1..])?;
            Some((message, rest.slice_ref(&line[..space])))
        });
        match read {
            Some((message, origin)) => {
                let notice =
                    Notice::Message { room: room.clone(), epoch: epoch.clone(), message, origin: None };
                out.push((notice, origin));
            }
            None => all = false,
        }
    }
    all
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

    /// The one notice a payload says, with its ORIGIN.
    fn one(payload: &Bytes) -> Option<(Notice, Bytes)> {
        let mut out = Vec::new();
        let read = parse_payload(&Rc::from("lobby"), payload, &mut out);
        assert_eq!(read, !out.is_empty(), "{out:?}");
        assert!(out.len() <= 1, "{out:?}");
        out.pop()
    }

    fn line(from: &str, text: &str) -> Stored {
        Stored {
            author: 0,
            edited: false,
            seq: 0,
            ts: 7,
            from: Rc::from(from),
            text: text.into(),
            kind: Kind::Line,
            mentions: Box::new([]),
        }
    }

    #[test]
    fn payloads_read_back_as_what_was_sent() {
        let said = Stored {
            kind: Kind::Action,
            mentions: Box::new([Rc::from("bob")]),
            ..line("ann", "hi \"there\"\n")
        };
        let payload = Bytes::from(format!("m ab12 5\np1:3 {}", say_body(&said)));
        let Some((Notice::Message { epoch, message, .. }, sent_by)) = one(&payload) else {
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
            one(&payload),
            Some((
                Notice::Event { room: Rc::from("lobby"), event: joined, origin: None },
                Bytes::from_static(b"p1:4")
            ))
        );
        let payload = Bytes::from(binary_payload(&origin("p1", None), &[0, 1, 2]));
        assert_eq!(
            one(&payload),
            Some((
                Notice::Binary { room: Rc::from("lobby"), data: Bytes::from_static(&[0, 1, 2]) },
                Bytes::from_static(b"-")
            ))
        );
        let notice = Event::notice("not a room event").json().unwrap();
        assert_eq!(one(&Bytes::from(event_payload("-", &notice))), None);
        assert_eq!(one(&Bytes::from_static(b"m x")), None);
        assert_eq!(one(&Bytes::from_static(b"m x 1")), None, "no message after the head");
    }

    #[test]
    fn a_batch_reads_back_as_its_messages_numbered_in_order_or_not_at_all() {
        let bodies =
            [say_body(&line("ann", "one")), say_body(&line("bob", "two\nlines")), say_body(&line("cy", "3"))];
        let payload =
            Bytes::from(format!("m ep 41\np1:3 {}\np2:9 {}\n- {}", bodies[0], bodies[1], bodies[2]));
        let mut out = vec![];
        assert!(parse_payload(&Rc::from("lobby"), &payload, &mut out));
        let read: Vec<_> = out
            .iter()
            .map(|(notice, origin)| match notice {
                Notice::Message { epoch, message, .. } => (
                    message.seq,
                    message.from.to_string(),
                    message.text.to_string(),
                    epoch.to_string(),
                    origin.clone(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [
            (41, "ann".to_string(), "one".to_string(), "ep".to_string(), Bytes::from_static(b"p1:3")),
            (42, "bob".into(), "two\nlines".into(), "ep".into(), Bytes::from_static(b"p2:9")),
            (43, "cy".into(), "3".into(), "ep".into(), Bytes::from_static(b"-")),
        ];
        assert_eq!(read, expected);
        // An unreadable message is skipped, under its own number: its neighbours still arrive.
        let broken = Bytes::from(format!("m ep 41\np1:3 {}\np2:9 {{nope\n- {}", bodies[0], bodies[2]));
        let mut out = vec![];
        assert!(!parse_payload(&Rc::from("lobby"), &broken, &mut out));
        let seqs: Vec<u64> = out
            .iter()
            .map(|(notice, _)| match notice {
                Notice::Message { message, .. } => message.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [41, 43]);
    }

    #[test]
    fn script_names_are_their_sha1() {
        assert_eq!(script_sha(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
