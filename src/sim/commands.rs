//! Redis's side of the wire: the commands the real broker writes (RESP arrays of bulk
//! strings, decoded with the broker's own decoder), read back as the [`Op`]s the simulated
//! keyspace runs, and the replies and pushes it sends, encoded as Redis encodes them.
//!
//! Scripts are known the way Redis knows them: by the SHA-1 of their text (`SCRIPT LOAD`
//! answers it, `EVALSHA` names it); an unknown SHA is refused with Redis's `NOSCRIPT` error
//! and an unknown command with its `ERR`, so a broker that sends what Redis would refuse meets
//! the refusal here too.

use bytes::{BufMut, Bytes, BytesMut};

use super::net::{Arrival, Sent};
use super::redis::{Op, Reply, Saying};
use crate::cluster::{presence, room};

/// The scripts the cluster runs, by SHA-1.
pub struct Scripts {
    say: String,
    load: String,
    heartbeat: String,
    claim: String,
    live: String,
    direct: String,
    history: String,
    holders: String,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            say: room::script_sha(&room::say_script()),
            load: room::script_sha(&room::load_script()),
            heartbeat: room::script_sha(&presence::heartbeat_script()),
            claim: room::script_sha(&presence::claim_script()),
            live: room::script_sha(&presence::live_entries_script()),
            direct: room::script_sha(&presence::direct_script()),
            history: room::script_sha(&room::history_script()),
            holders: room::script_sha(&presence::holders_script()),
        }
    }
}

/// One command as Redis reads it: `args` are the array's items.
pub fn parse(args: &[Bytes], scripts: &Scripts) -> Sent {
    let text: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let name = text.first().map(|n| n.to_ascii_uppercase()).unwrap_or_default();
    let arg = |i: usize| text.get(i).cloned().unwrap_or_default();
    let op = match (name.as_str(), text.len()) {
        ("SUBSCRIBE", 2..) => return Sent::Subscribe(text[1..].to_vec()),
        ("UNSUBSCRIBE", 2..) => return Sent::Unsubscribe(text[1..].to_vec()),
        ("SELECT", 2) => Op::Select,
        ("SCRIPT", 3) if arg(1).eq_ignore_ascii_case("LOAD") => {
            Op::ScriptLoad { sha: room::script_sha(&arg(2)) }
        }
        ("COMMAND", 3) if arg(1).eq_ignore_ascii_case("INFO") => Op::Capability,
        ("ZREM", 3) if arg(1) == presence::PROCS => Op::Forget { pid: arg(2) },
        ("INCR", 2) if arg(1) == presence::GUESTS => Op::Incr,
        ("HSET", 4) => Op::Hset { key: arg(1), field: arg(2), value: arg(3) },
        ("HDEL", 3) => Op::Hdel { key: arg(1), field: arg(2) },
        // Keys never expire in the simulation's short runs.
        ("EXPIRE", 3) => Op::Expire,
        ("HGETALL", 2) => Op::Hgetall { key: arg(1) },
        ("HSCAN", 5) if arg(3).eq_ignore_ascii_case("COUNT") => Op::Hscan {
            key: arg(1),
            cursor: arg(2).parse().unwrap_or(0),
            count: arg(4).parse().unwrap_or(10),
        },
        ("PUBLISH", 3) => Op::Publish { channel: arg(1), payload: args[2].clone() },
        ("EVALSHA", 3..) => script(&text, scripts),
        _ => Op::Unknown(format!("ERR unknown command '{}'", arg(0))),
    };
    Sent::Command(op)
}

/// `EVALSHA SHA NUMKEYS KEYS... ARGS...` as the script it names.
fn script(text: &[String], scripts: &Scripts) -> Op {
    let sha = &text[1];
    let keys = text[2].parse::<usize>().unwrap_or(0);
    let (keys, args) = text[3..].split_at(keys.min(text.len() - 3));
    let key = |i: usize| keys.get(i).cloned().unwrap_or_default();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let number = |i: usize| arg(i).parse().unwrap_or(0);
    if *sha == scripts.say {
        let said = args.get(room::SAY_FIXED_ARGS..).unwrap_or_default().chunks_exact(3);
        Op::Say {
            room: room_of_meta(&key(0)).into(),
            epoch: arg(1).into(),
            display: arg(2).into(),
            history: number(3) as usize,
            said: said
                .map(|said| Saying {
                    origin: said[0].clone(),
                    body: said[1].clone(),
                    deleted: said[2].split('-').next().and_then(|seq| seq.parse().ok()),
                })
                .collect(),
        }
    } else if *sha == scripts.load {
        Op::Load {
            room: room_of_meta(&key(0)).into(),
            epoch: arg(0).into(),
            display: arg(1).into(),
            history: number(3) as usize,
        }
    } else if *sha == scripts.holders {
        Op::Holders { keys: keys.iter().skip(1).cloned().collect() }
    } else if *sha == scripts.history {
        Op::History { room: room_of_meta(&key(0)).into(), history: number(0) as usize }
    } else if *sha == scripts.heartbeat {
        Op::Heartbeat { pid: arg(0), ttl_ms: number(1) }
    } else if *sha == scripts.claim {
        Op::Claim { key: key(1), holder: arg(0), value: arg(1) }
    } else if *sha == scripts.live {
        Op::Live { key: key(1) }
    } else if *sha == scripts.direct {
        let kind = match arg(1).as_str() {
            "p" => "p",
            "a" => "a",
            "n" => "n",
            "k" => "k",
            "b" => "b",
            other => return Op::Unknown(format!("ERR direct message of kind {other:?}")),
        };
        Op::Direct { key: key(1), kind, body: arg(2), pid: arg(3) }
    } else {
        Op::Unknown("NOSCRIPT No matching script. Please use EVAL.".into())
    }
}

/// The room key in a meta key, `wschat:{K}:meta`.
fn room_of_meta(key: &str) -> &str {
    key.strip_prefix("wschat:{").and_then(|k| k.strip_suffix("}:meta")).unwrap_or(key)
}

/// What reaches a process, as Redis puts it on the wire.
pub fn encode(arrival: &Arrival, out: &mut BytesMut) {
    match arrival {
        Arrival::Reply(reply) => encode_reply(reply, out),
        Arrival::Subscribed(channel) => push(out, "subscribe", channel.as_bytes(), None),
        Arrival::Unsubscribed(channel) => push(out, "unsubscribe", channel.as_bytes(), None),
        Arrival::Message(channel, payload) => push(out, "message", channel.as_bytes(), Some(payload)),
    }
}

/// A push: `[kind, channel, payload]`, or `[kind, channel, count]` for a confirmation (the
/// count, which the broker does not read, is given as 1).
fn push(out: &mut BytesMut, kind: &str, channel: &[u8], payload: Option<&Bytes>) {
    out.put_slice(b"*3\r\n");
    bulk(out, kind.as_bytes());
    bulk(out, channel);
    match payload {
        Some(payload) => bulk(out, payload),
        None => integer(out, 1),
    }
}

fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    match reply {
        Reply::Ok => out.put_slice(b"+OK\r\n"),
        Reply::Error(e) => out.put_slice(format!("-{e}\r\n").as_bytes()),
        Reply::Integer(n) => integer(out, *n),
        Reply::Text(text) => bulk(out, text.as_bytes()),
        // `COMMAND INFO` of a command this Redis lacks: one null entry.
        Reply::NoSuchCommand => out.put_slice(b"*1\r\n*-1\r\n"),
        Reply::Loaded { epoch, top, display, entries } => {
            out.put_slice(b"*4\r\n");
            bulk(out, epoch.as_bytes());
            // HMGET's answers are strings.
            bulk(out, top.to_string().as_bytes());
            bulk(out, display.as_bytes());
            array(out, entries.len());
            for (seq, body) in entries {
                out.put_slice(b"*2\r\n");
                bulk(out, format!("{seq}-1").as_bytes());
                out.put_slice(b"*2\r\n");
                bulk(out, b"m");
                bulk(out, body.as_bytes());
            }
        }
        Reply::Pairs(pairs) => flat_pairs(out, pairs),
        Reply::Scanned(cursor, pairs) => {
            out.put_slice(b"*2\r\n");
            bulk(out, cursor.to_string().as_bytes());
            flat_pairs(out, pairs);
        }
        Reply::Reached(reached, held) => {
            out.put_slice(b"*2\r\n");
            integer(out, *reached);
            bulk(out, held.as_bytes());
        }
        Reply::Said(seq, epoch) => {
            out.put_slice(b"*2\r\n");
            integer(out, *seq as i64);
            bulk(out, epoch.as_bytes());
        }
        Reply::Nil => out.put_slice(b"$-1\r\n"),
        Reply::Found(found) => {
            array(out, found.len());
            for value in found {
                match value {
                    Some(value) => bulk(out, value.as_bytes()),
                    None => out.put_slice(b"$-1\r\n"),
                }
            }
        }
    }
}

/// `[field, value, field, value, ...]`.
fn flat_pairs(out: &mut BytesMut, pairs: &[(String, String)]) {
    array(out, pairs.len() * 2);
    for (field, value) in pairs {
        bulk(out, field.as_bytes());
        bulk(out, value.as_bytes());
    }
}

fn array(out: &mut BytesMut, len: usize) {
    out.put_slice(format!("*{len}\r\n").as_bytes());
}

fn integer(out: &mut BytesMut, n: i64) {
    out.put_slice(format!(":{n}\r\n").as_bytes());
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    out.put_slice(format!("${}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::resp::{Decoder, Frame, Limits};

    fn command(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    #[test]
    fn the_broker_s_commands_read_back_as_ops() {
        let scripts = Scripts::default();
        let heartbeat = room::script_sha(&presence::heartbeat_script());
        let sent = parse(&command(&["EVALSHA", &heartbeat, "1", presence::PROCS, "p1", "3000"]), &scripts);
        assert_eq!(sent, Sent::Command(Op::Heartbeat { pid: "p1".into(), ttl_ms: 3000 }));
        let unknown = parse(&command(&["EVALSHA", "feed", "0"]), &scripts);
        assert!(matches!(unknown, Sent::Command(Op::Unknown(e)) if e.starts_with("NOSCRIPT")));
        assert_eq!(
            parse(&command(&["SUBSCRIBE", "a", "b"]), &scripts),
            Sent::Subscribe(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn replies_decode_as_redis_s_own() {
        let mut out = BytesMut::new();
        let entries = vec![(3, "{}".to_string())];
        let loaded = Reply::Loaded { epoch: "e".into(), top: 3, display: "Lobby".into(), entries };
        encode(&Arrival::Reply(loaded), &mut out);
        encode(&Arrival::Message("ch".into(), Bytes::from_static(b"hi")), &mut out);
        let (mut frames, mut budget, out) = (Vec::new(), 100, out.freeze());
        let used = Decoder::new(Limits::default()).feed(&out, &mut frames, &mut budget).unwrap();
        assert_eq!(used, out.len());
        let text = |s: &str| Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()));
        let entry = Frame::Array(vec![text("3-1"), Frame::Array(vec![text("m"), text("{}")])]);
        assert_eq!(
            frames[0],
            Frame::Array(vec![text("e"), text("3"), text("Lobby"), Frame::Array(vec![entry])])
        );
        assert_eq!(frames[1], Frame::Array(vec![text("message"), text("ch"), text("hi")]));
    }
}
