//! What our Redis does, in memory: the keyspace the cluster's commands and Lua scripts work on
//! (key names and layouts from `crate::cluster::room` and `crate::cluster::presence`), and
//! each script, line for line, as a Rust function over it. No time passes and nothing is
//! delivered here: [`Keyspace::run`] runs one command atomically, as Redis runs a script, and
//! returns its reply and what it published; the simulated network (`net.rs`) decides when the
//! command arrives and when its reply and publishes reach each process.
//!
//! The payloads published are the real ones (`room::say_body`, `room::origin`, the
//! `m EPOCH SEQ\nORIGIN BODY...` form of the say script), so the simulated processes read them
//! with the same parsers as real ones.
//!
//! Left out of the model: key expiry (a room's month-long TTL: virtual time never gets near
//! it), `MAXLEN ~` trimming keeping a few dozen extra entries (the log keeps exactly
//! `--history`; a load asks for that many anyway), databases, AUTH, and sharded pub/sub. The
//! commands reach it as the broker writes them, read back by `commands.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use crate::cluster::{presence, room};

/// A hash: field to value, in Redis's (here: sorted) order.
pub type Hash = BTreeMap<String, String>;

/// One message of the say script's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saying {
    pub body: String,
    pub origin: String,
    /// A delete: the log entry it removes.
    pub deleted: Option<u64>,
}

/// One command as it reaches Redis: a script with its keys and arguments, or a plain command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The say script: number, keep and publish a batch of a room's messages.
    Say {
        room: Rc<str>,
        epoch: Rc<str>,
        display: Rc<str>,
        history: usize,
        said: Vec<Saying>,
    },
    /// The load script: the room's history, starting its epoch if it has none.
    Load {
        room: Rc<str>,
        epoch: Rc<str>,
        display: Rc<str>,
        history: usize,
    },
    /// The holders script: for each nick key, a live holder's value, or nil.
    Holders {
        keys: Vec<String>,
    },
    /// The history script: a room's history as the load script gives it, starting nothing.
    History {
        room: Rc<str>,
        history: usize,
    },
    /// The heartbeat script: `pid` is alive for `ttl_ms` more.
    Heartbeat {
        pid: String,
        ttl_ms: u64,
    },
    /// `ZREM wschat:procs PID`: a process's old name dies with its link.
    Forget {
        pid: String,
    },
    /// `INCR wschat:guests`.
    Incr,
    /// The claim script on a nick's hash.
    Claim {
        key: String,
        holder: String,
        value: String,
    },
    Hset {
        key: String,
        field: String,
        value: String,
    },
    Hdel {
        key: String,
        field: String,
    },
    Hgetall {
        key: String,
    },
    /// `HSCAN KEY CURSOR COUNT N`: the cursor here is a place in the hash's sorted order.
    Hscan {
        key: String,
        cursor: usize,
        count: usize,
    },
    /// The live-entries script on a hash.
    Live {
        key: String,
    },
    /// The direct script: `KIND CLIENT BODY` to every live holder of a nick on another process.
    Direct {
        key: String,
        kind: &'static str,
        body: String,
        pid: String,
    },
    Publish {
        channel: String,
        payload: Bytes,
    },
    /// `COMMAND INFO SPUBLISH`: answered as a Redis without sharded pub/sub.
    Capability,
    /// `SELECT DB`: every database is the one keyspace here.
    Select,
    /// `EXPIRE KEY SECONDS`: nothing expires in a run; answered as Redis does for a key.
    Expire,
    /// `SCRIPT LOAD TEXT`: answered with the script's SHA-1.
    ScriptLoad {
        sha: String,
    },
    /// What Redis would refuse, with its error.
    Unknown(String),
}

/// What Redis answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// A refusal (`-ERR ...`).
    Error(String),
    /// `COMMAND INFO` of a command this Redis does not have.
    NoSuchCommand,
    Integer(i64),
    /// A bulk string (the claim script's "held by" value).
    Text(String),
    /// The load script: epoch, last sequence, display, and the log's newest entries (sequence,
    /// body), newest first as `XREVRANGE` gives them.
    Loaded {
        epoch: Rc<str>,
        top: u64,
        display: Rc<str>,
        entries: Vec<(u64, String)>,
    },
    /// A flat field, value list (`HGETALL`, the live-entries script).
    Pairs(Vec<(String, String)>),
    /// A page of `HSCAN`: the next cursor (0: the last page) and the page's pairs.
    Scanned(usize, Vec<(String, String)>),
    /// The direct script: connections reached, and the nick's value as held there.
    Reached(i64, String),
    /// The say script: the first message's sequence number and the room's epoch.
    Said(u64, Rc<str>),
    /// A nil (the history script, for a room Redis does not know).
    Nil,
    /// An array of bulk strings or nils (the holders script).
    Found(Vec<Option<String>>),
}

/// A room's meta hash and log stream.
#[derive(Debug, Default)]
struct Room {
    epoch: Rc<str>,
    seq: u64,
    display: Rc<str>,
    log: VecDeque<(u64, String)>,
}

/// Everything Redis keeps (lost when it restarts without its data).
#[derive(Debug, Default)]
pub struct Keyspace {
    /// By room key: `wschat:{K}:meta` and `wschat:{K}:log` together.
    rooms: BTreeMap<Rc<str>, Room>,
    /// Every hash by its key name (nicks, rooms' members, counts, bans).
    hashes: BTreeMap<String, Hash>,
    /// `wschat:procs`: process id to expiry, in ms of Redis's clock.
    procs: BTreeMap<String, u64>,
    guests: i64,
}

/// What one command did: its reply, and the (channel, payload) pairs it published, in order.
pub type Ran = (Reply, Vec<(String, Bytes)>);

impl Keyspace {
    /// Runs one command at `now_ms` on Redis's clock, atomically.
    pub fn run(&mut self, op: Op, now_ms: u64) -> Ran {
        let reply = match op {
            Op::Say { room, epoch, display, history, said } => {
                return self.say(room, epoch, display, history, said)
            }
            Op::Load { room, epoch, display, history } => self.load(room, epoch, display, history),
            Op::Holders { keys } => {
                let found = keys
                    .iter()
                    .map(|key| self.live_entries(key, now_ms).into_iter().next().map(|(_, value)| value))
                    .collect();
                Reply::Found(found)
            }
            Op::History { room, history } => match self.rooms.get(&room) {
                Some(known) => {
                    let (epoch, display) = (known.epoch.clone(), known.display.clone());
                    self.load(room, epoch, display, history)
                }
                None => Reply::Nil,
            },
            Op::Heartbeat { pid, ttl_ms } => {
                let was_alive = self.alive(&pid, now_ms);
                self.procs.insert(pid, now_ms + ttl_ms);
                let day_ago = now_ms.saturating_sub(86_400_000);
                self.procs.retain(|_, expiry| *expiry >= day_ago);
                Reply::Integer(i64::from(was_alive))
            }
            Op::Forget { pid } => Reply::Integer(i64::from(self.procs.remove(&pid).is_some())),
            Op::Incr => {
                self.guests += 1;
                Reply::Integer(self.guests)
            }
            Op::Claim { key, holder, value } => self.claim(&key, holder, value, now_ms),
            Op::Hset { key, field, value } => {
                let added = self.hashes.entry(key).or_default().insert(field, value).is_none();
                Reply::Integer(i64::from(added))
            }
            Op::Hdel { key, field } => Reply::Integer(i64::from(self.hdel(&key, &field))),
            Op::Hgetall { key } => Reply::Pairs(self.hash(&key).into_iter().collect()),
            Op::Hscan { key, cursor, count } => {
                let hash = self.hash(&key);
                let page: Vec<(String, String)> = hash.into_iter().skip(cursor).take(count.max(1)).collect();
                let next = cursor + page.len();
                let next = if next >= self.hashes.get(&key).map_or(0, |h| h.len()) { 0 } else { next };
                Reply::Scanned(next, page)
            }
            Op::Live { key } => Reply::Pairs(self.live_entries(&key, now_ms)),
            Op::Direct { key, kind, body, pid } => return self.direct(&key, kind, &body, &pid, now_ms),
            Op::Publish { channel, payload } => return (Reply::Integer(0), vec![(channel, payload)]),
            Op::Capability => Reply::NoSuchCommand,
            Op::Select => Reply::Ok,
            Op::ScriptLoad { sha } => Reply::Text(sha),
            Op::Expire => Reply::Integer(1),
            Op::Unknown(error) => Reply::Error(error),
        };
        (reply, Vec::new())
    }

    /// Whether this process has been heard from within its TTL (the scripts' `alive`).
    pub fn is_alive(&self, pid: &str, now_ms: u64) -> bool {
        self.alive(pid, now_ms)
    }

    /// The room's epoch and last sequence, if Redis has the room.
    pub fn room_numbering(&self, room: &str) -> Option<(Rc<str>, u64)> {
        self.rooms.get(room).map(|r| (r.epoch.clone(), r.seq))
    }

    /// The epoch prelude: the room's epoch, started (with an empty log) if it has none.
    fn room(&mut self, key: Rc<str>, epoch: Rc<str>, display: Rc<str>) -> &mut Room {
        self.rooms.entry(key).or_insert_with(|| Room { epoch, seq: 0, display, log: VecDeque::new() })
    }

    fn say(
        &mut self,
        key: Rc<str>,
        epoch: Rc<str>,
        display: Rc<str>,
        history: usize,
        said: Vec<Saying>,
    ) -> Ran {
        let channel = room::channel(0, &key);
        let room = self.room(key, epoch, display);
        let first = room.seq + 1;
        let mut payload = format!("m {} {first}", room.epoch);
        for Saying { body, origin, deleted } in said {
            room.seq += 1;
            if let Some(target) = deleted {
                // The message, and the edits of it (the say script's XDELs).
                let edit_of = |body: &str| {
                    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|b| b["edit"] == target)
                };
                room.log.retain(|(seq, body)| *seq != target && !edit_of(body));
            }
            payload.push_str(&format!("\n{origin} {body}"));
            if history > 0 {
                room.log.push_back((room.seq, body));
                while room.log.len() > history {
                    room.log.pop_front();
                }
            }
        }
        (Reply::Said(first, room.epoch.clone()), vec![(channel, Bytes::from(payload))])
    }

    fn load(&mut self, key: Rc<str>, epoch: Rc<str>, display: Rc<str>, history: usize) -> Reply {
        let room = self.room(key, epoch, display);
        let entries = room.log.iter().rev().take(history).cloned().collect();
        Reply::Loaded { epoch: room.epoch.clone(), top: room.seq, display: room.display.clone(), entries }
    }

    fn hash(&self, key: &str) -> Hash {
        self.hashes.get(key).cloned().unwrap_or_default()
    }

    fn hdel(&mut self, key: &str, field: &str) -> bool {
        let Some(hash) = self.hashes.get_mut(key) else { return false };
        let removed = hash.remove(field).is_some();
        if hash.is_empty() {
            self.hashes.remove(key);
        }
        removed
    }

    /// The prelude's `alive`: the process named by a field's leading `PID` (up to `:` or a
    /// space) has an expiry not yet passed.
    fn alive(&self, field: &str, now_ms: u64) -> bool {
        let pid = field.split([':', ' ']).next().unwrap_or("");
        self.procs.get(pid).is_some_and(|&expiry| expiry >= now_ms)
    }

    /// 1 if `holder` now holds the nick, else the value of a live holder that keeps it (a
    /// signed-in user's connections share theirs); dead holders are deleted on the way.
    fn claim(&mut self, key: &str, holder: String, value: String, now_ms: u64) -> Reply {
        for (field, held) in self.hash(key) {
            if field == holder {
                continue;
            }
            if !self.alive(&field, now_ms) {
                self.hdel(key, &field);
            } else if !(held.starts_with('S') && held == value) {
                return Reply::Text(held);
            }
        }
        self.hashes.entry(key.to_string()).or_default().insert(holder, value);
        Reply::Integer(1)
    }

    fn live_entries(&mut self, key: &str, now_ms: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, value) in self.hash(key) {
            if self.alive(&field, now_ms) {
                out.push((field, value));
            } else {
                self.hdel(key, &field);
            }
        }
        out
    }

    fn direct(&mut self, key: &str, kind: &str, body: &str, caller: &str, now_ms: u64) -> Ran {
        let (mut reached, mut held, mut published) = (0, String::new(), Vec::new());
        for (field, value) in self.hash(key) {
            if !self.alive(&field, now_ms) {
                self.hdel(key, &field);
                continue;
            }
            let Some((pid, client)) = presence::parse_holder(&field) else { continue };
            if pid != caller {
                let payload = format!("{kind} {client} {body}");
                published.push((presence::process_channel(0, pid), Bytes::from(payload)));
                reached += 1;
                held = value;
            }
        }
        (Reply::Reached(reached, held), published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(keys: &mut Keyspace, epoch: &str, text: &str) -> Ran {
        let said = vec![Saying { body: text.to_string(), origin: "p1:3".into(), deleted: None }];
        let op = Op::Say {
            room: Rc::from("lobby"),
            epoch: Rc::from(epoch),
            display: Rc::from("Lobby"),
            history: 2,
            said,
        };
        keys.run(op, 0)
    }

    #[test]
    fn the_say_script_numbers_keeps_and_publishes_in_one_epoch() {
        let mut keys = Keyspace::default();
        let (reply, published) = say(&mut keys, "first", "a");
        assert_eq!(reply, Reply::Said(1, Rc::from("first")), "the id: the sequence and the epoch");
        assert_eq!(published, [(room::channel(0, "lobby"), Bytes::from("m first 1\np1:3 a"))]);
        let unknown = Op::History { room: Rc::from("attic"), history: 10 };
        assert_eq!(keys.run(unknown, 0).0, Reply::Nil, "the history script starts nothing");
        say(&mut keys, "ignored", "b");
        let (_, published) = say(&mut keys, "ignored", "c");
        assert_eq!(published[0].1, Bytes::from("m first 3\np1:3 c"), "the room keeps its epoch");
        let load =
            Op::Load { room: Rc::from("lobby"), epoch: Rc::from("x"), display: Rc::from("x"), history: 5 };
        let entries = vec![(3, "c".to_string()), (2, "b".to_string())];
        let loaded = Reply::Loaded { epoch: Rc::from("first"), top: 3, display: Rc::from("Lobby"), entries };
        assert_eq!(keys.run(load, 0).0, loaded, "the log is trimmed to --history, newest first");
    }

    #[test]
    fn a_nick_is_held_by_one_live_process_or_shared_by_one_signed_user() {
        let mut keys = Keyspace::default();
        let claim = |holder: &str, value: &str| Op::Claim {
            key: presence::nick_key("ann"),
            holder: holder.into(),
            value: value.into(),
        };
        keys.run(Op::Heartbeat { pid: "a".into(), ttl_ms: 100 }, 0);
        keys.run(Op::Heartbeat { pid: "b".into(), ttl_ms: 100 }, 0);
        assert_eq!(keys.run(claim("a:1", "G ann"), 0).0, Reply::Integer(1));
        assert_eq!(keys.run(claim("b:1", "G ann"), 50).0, Reply::Text("G ann".into()));
        assert_eq!(keys.run(claim("b:1", "G ann"), 101).0, Reply::Integer(1), "a's expiry passed");
        keys.run(Op::Heartbeat { pid: "b".into(), ttl_ms: 100 }, 101);
        assert_eq!(keys.run(claim("a:2", "S ann"), 101).0, Reply::Text("G ann".into()), "b lives on");
        let mut keys = Keyspace::default();
        keys.run(Op::Heartbeat { pid: "a".into(), ttl_ms: 100 }, 0);
        keys.run(Op::Heartbeat { pid: "b".into(), ttl_ms: 100 }, 0);
        keys.run(claim("a:1", "S ann"), 0);
        assert_eq!(keys.run(claim("b:1", "S ann"), 0).0, Reply::Integer(1), "one user, two devices");
    }

    #[test]
    fn direct_messages_reach_other_processes_holders_only() {
        let mut keys = Keyspace::default();
        for pid in ["a", "b"] {
            keys.run(Op::Heartbeat { pid: pid.into(), ttl_ms: 100 }, 0);
        }
        let key = presence::nick_key("ann");
        for holder in ["a:1", "b:7"] {
            keys.run(Op::Hset { key: key.clone(), field: holder.into(), value: "S ann".into() }, 0);
        }
        let op = Op::Direct { key, kind: "p", body: "ann\nbob\n5\nhi".into(), pid: "a".into() };
        let (reply, published) = keys.run(op, 0);
        assert_eq!(reply, Reply::Reached(1, "S ann".into()));
        assert_eq!(published, [(presence::process_channel(0, "b"), Bytes::from("p 7 ann\nbob\n5\nhi"))]);
    }
}
