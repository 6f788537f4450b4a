//! Who is where across the cluster, in Redis: processes and their liveness, nicks and who
//! holds them, rooms' members and counts, bans, and the channels that reach one process or
//! all of them. Key names and Lua scripts are defined once here.
//!
//! Liveness is Centrifugo's pattern (a hash of entries plus a sorted set of expiry times),
//! with one change: the sorted set `wschat:procs` holds each *process's* expiry, refreshed by
//! its heartbeat, and every entry is named `PID:CLIENT`. A heartbeat is then one command per
//! process rather than one per member, and a process that dies takes all its entries with it
//! once its expiry passes: scripts skip (and delete) entries of processes past their expiry.
//! Times are Redis's own (`TIME`), so processes' clocks never need to agree.
//!
//! - `wschat:procs`: sorted set, process id → expiry (ms);
//! - `wschat:nick:{F}`: hash, `PID:CLIENT` → `S NICK` (signed in) or `G NICK`, for the nick
//!   whose folded form is F: one holder, or several connections of one signed-in user;
//! - `wschat:{ROOM}:who`: hash, `PID:CLIENT` → nick, the room's members;
//! - `wschat:counts`: hash, `PID ROOM` → `COUNT DISPLAY`, each process's rooms;
//! - `wschat:bans`: hash, ban key → the ban as JSON;
//! - channels `wschat:DB:proc:PID` (one process: private messages, kicks) and `wschat:DB:bans`.

use serde::{Deserialize, Serialize};

use crate::chat::{Ban, BanKey};

pub const PROCS: &str = "wschat:procs";
pub const COUNTS: &str = "wschat:counts";
pub const BANS: &str = "wschat:bans";
/// The counter guest numbers are taken from (`INCR`), so that guest nicks are short and
/// unique across every process.
pub const GUESTS: &str = "wschat:guests";

pub fn nick_key(folded: &str) -> String {
    format!("wschat:nick:{{{folded}}}")
}

pub fn who_key(room: &str) -> String {
    format!("wschat:{{{room}}}:who")
}

/// A connection's name in presence entries.
pub fn holder(pid: &str, client: usize) -> String {
    format!("{pid}:{client}")
}

/// A presence entry's value for a nick.
/// A signed-in user's read markers: room key -> message id.
pub fn read_key(folded: &str) -> String {
    format!("wschat:read:{{{folded}}}")
}

/// How long a user's read markers outlive their last change (90 days).
pub const READ_TTL_SECS: u64 = 90 * 24 * 3600;

pub fn nick_value(nick: &str, signed: bool) -> String {
    format!("{} {nick}", if signed { 'S' } else { 'G' })
}

pub fn process_channel(db: u32, pid: &str) -> String {
    format!("wschat:{db}:proc:{pid}")
}

pub fn bans_channel(db: u32) -> String {
    format!("wschat:{db}:bans")
}

/// Lua shared by the scripts: Redis's clock, and whether a process is alive.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = {}
local function alive(field)
  local pid = string.match(field, '^([^: ]+)')
  if known[pid] == nil then
    local expiry = redis.call('ZSCORE', KEYS[1], pid)
    known[pid] = expiry ~= false and expiry ~= nil and tonumber(expiry) >= now
  end
  return known[pid]
end
"#;

/// The process is alive until now + TTL. KEYS: procs. ARGV: pid, ttl ms. Returns 1 if it was
/// still alive, 0 if it had expired (its entries may have been deleted meanwhile).
pub fn heartbeat_script() -> String {
    format!(
        "{PRELUDE}
local was_alive = alive(ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
if was_alive then return 1 else return 0 end"
    )
}

/// Claims a nick for a connection: 1 if it now holds it, else the value of a live holder
/// that keeps it. A signed-in user's connections share its nick (equal values).
/// KEYS: procs, nick key. ARGV: holder, value.
pub fn claim_script() -> String {
    format!(
        "{PRELUDE}
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local field, value = entries[i], entries[i + 1]
  if field ~= ARGV[1] then
    if not alive(field) then
      redis.call('HDEL', KEYS[2], field)
    elseif not (string.sub(value, 1, 1) == 'S' and value == ARGV[2]) then
      return value
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if #KEYS >= 3 then
  return {{1, redis.call('HGETALL', KEYS[3])}}
end
return 1"
    )
}

/// The live entries of a hash, flattened field, value; dead processes' entries are deleted.
/// KEYS: procs, hash.
pub fn live_entries_script() -> String {
    format!(
        "{PRELUDE}
local entries = redis.call('HGETALL', KEYS[2])
local out = {{}}
for i = 1, #entries, 2 do
  if alive(entries[i]) then
    out[#out + 1] = entries[i]
    out[#out + 1] = entries[i + 1]
  else
    redis.call('HDEL', KEYS[2], entries[i])
  end
end
return out"
    )
}

/// Which of several nicks a live connection holds: for each nick key, the value of a live
/// holder (`S NICK` or `G NICK`), or false.
/// KEYS: procs, then the nick keys.
pub fn holders_script() -> String {
    format!(
        "{PRELUDE}
local out = {{}}
for k = 2, #KEYS do
  local found = false
  local entries = redis.call('HGETALL', KEYS[k])
  for i = 1, #entries, 2 do
    if not found and alive(entries[i]) then
      found = entries[i + 1]
    end
  end
  out[#out + 1] = found
end
return out"
    )
}

/// Publishes a payload to every live connection holding a nick on another process than the
/// caller's (its own holders it reaches itself), on that process's channel: `KIND CLIENT BODY`.
/// Returns {connections reached, the nick's value as held there}.
/// KEYS: procs, nick key. ARGV: channel prefix (`wschat:DB:proc:`), kind, body, the caller's pid.
pub fn direct_script() -> String {
    format!(
        "{PRELUDE}
local entries = redis.call('HGETALL', KEYS[2])
local reached, value = 0, ''
for i = 1, #entries, 2 do
  local field = entries[i]
  if alive(field) then
    local pid, client = string.match(field, '^([^:]+):(.+)$')
    if pid ~= ARGV[4] then
      redis.call('PUBLISH', ARGV[1] .. pid, ARGV[2] .. ' ' .. client .. ' ' .. ARGV[3])
      reached = reached + 1
      value = entries[i + 1]
    end
  else
    redis.call('HDEL', KEYS[2], field)
  end
end
return {{reached, value}}"
    )
}

/// A ban as kept in Redis and published.
#[derive(Serialize, Deserialize)]
struct BanJson {
    key: String,
    nick: String,
    until_ms: u64,
    reason: String,
    by: String,
}

pub fn ban_json(key: &BanKey, ban: &Ban) -> String {
    let json = BanJson {
        key: key.to_store(),
        nick: ban.nick.clone(),
        until_ms: ban.until_ms,
        reason: ban.reason.clone(),
        by: ban.by.clone(),
    };
    serde_json::to_string(&json).unwrap_or_default()
}

pub fn parse_ban(json: &[u8]) -> Option<(BanKey, Ban)> {
    let ban: BanJson = serde_json::from_slice(json).ok()?;
    let key = BanKey::from_store(&ban.key)?;
    Some((key, Ban { nick: ban.nick, until_ms: ban.until_ms, reason: ban.reason, by: ban.by }))
}

/// `unban KEY` on the bans channel.
pub fn unban_payload(key: &BanKey) -> String {
    format!("unban {}", key.to_store())
}

/// A ban key from an `unban` payload.
pub fn parse_unban(payload: &[u8]) -> Option<BanKey> {
    BanKey::from_store(std::str::from_utf8(payload).ok()?.strip_prefix("unban ")?)
}

/// The process a client id of ours belongs to: parsed from a `PID:CLIENT` field.
pub fn parse_holder(field: &str) -> Option<(&str, usize)> {
    let (pid, client) = field.split_once(':')?;
    Some((pid, client.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_read_back_as_what_was_written() {
        let ban = Ban { nick: "mallory".into(), until_ms: 99, reason: "spam".into(), by: "root".into() };
        for key in [BanKey::User("mallory".into()), BanKey::Address([127, 0, 0, 1].into())] {
            assert_eq!(parse_ban(ban_json(&key, &ban).as_bytes()), Some((key.clone(), ban.clone())));
            assert_eq!(parse_unban(unban_payload(&key).as_bytes()), Some(key));
        }
    }

    #[test]
    fn holders_name_their_process() {
        assert_eq!(parse_holder(&holder("p1x", 42)), Some(("p1x", 42)));
        assert_eq!(nick_value("ann", true), "S ann");
        assert_eq!(nick_key("ann"), "wschat:nick:{ann}");
    }
}
