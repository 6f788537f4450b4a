//! `Idempotency-Key`: an application that retries a `POST` (its connection dropped before the
//! reply came) sends the same key again, and gets the first answer again instead of a second
//! message, a second kick or a second ban.
//!
//! Each key is remembered for [`KEEP_FOR`] with a fingerprint of its request (path and body)
//! and, once the chat has answered, the reply. The same key with another request is refused
//! (`422`: the application reused a key by mistake); the same key while its first request is
//! still being answered is `409` (retry a moment later). What this holds is bounded: at most
//! [`MAX_KEYS`] keys of at most [`MAX_KEY_LEN`] bytes, and a key past them pushes out the
//! oldest. Keys are this process's: in a cluster, an application retries through the same
//! process's API (see docs/API.md).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use super::wire::Reply;

/// How long a key is remembered.
pub const KEEP_FOR: Duration = Duration::from_secs(300);
/// Keys remembered at most; a newer one pushes out the oldest.
pub const MAX_KEYS: usize = 10_000;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What a request with a key comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A new key: carry the request out, then [`Idempotency::answered`].
    New,
    /// Answered before: this again, and nothing else done.
    Again(Reply),
    /// Refused: a key in use by another request, or one still being answered.
    Refused(Reply),
}

struct Entry {
    fingerprint: u64,
    /// None while the first request is being answered.
    reply: Option<Reply>,
    since: Instant,
}

/// The keys seen in the last [`KEEP_FOR`].
#[derive(Default)]
pub struct Idempotency {
    entries: HashMap<String, Entry>,
    /// Keys in the order first seen, with when: the oldest go first.
    order: VecDeque<(Instant, String)>,
}

impl Idempotency {
    /// A request to `path` with `body` under `key`.
    pub fn check(&mut self, key: &str, path: &str, body: &[u8], now: Instant) -> Seen {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            let why = format!("Idempotency-Key: 1 to {MAX_KEY_LEN} bytes");
            return Seen::Refused(Reply::error(400, why));
        }
        self.forget_expired(now);
        let fingerprint = fingerprint(path, body);
        match self.entries.get(key) {
            Some(entry) if entry.fingerprint != fingerprint => {
                Seen::Refused(Reply::error(422, "Idempotency-Key already used for another request"))
            }
            Some(Entry { reply: Some(reply), .. }) => Seen::Again(reply.clone()),
            Some(Entry { reply: None, .. }) => {
                Seen::Refused(Reply::error(409, "a request with this Idempotency-Key is being answered"))
            }
            None => {
                while self.entries.len() >= MAX_KEYS {
                    let Some((since, oldest)) = self.order.pop_front() else { break };
                    if self.entries.get(&oldest).is_some_and(|entry| entry.since == since) {
                        self.entries.remove(&oldest);
                    }
                }
                self.entries.insert(key.to_string(), Entry { fingerprint, reply: None, since: now });
                self.order.push_back((now, key.to_string()));
                Seen::New
            }
        }
    }

    /// The reply to the first request under `key`, given again to whoever repeats it.
    pub fn answered(&mut self, key: &str, reply: &Reply) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.reply = Some(reply.clone());
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some((since, key)) = self.order.front() {
            if now.saturating_duration_since(*since) < KEEP_FOR {
                break;
            }
            if self.entries.get(key).is_some_and(|entry| entry.since == *since) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

fn fingerprint(path: &str, body: &[u8]) -> u64 {
    // The standard hasher with its fixed keys: the same request hashes the same for the
    // process's life, which is as long as a key is kept.
    let mut hasher = DefaultHasher::new();
    (path, body).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_answers_its_first_reply_again_for_five_minutes() {
        let (mut keys, t0) = (Idempotency::default(), Instant::now());
        assert_eq!(keys.check("k1", "/api/publish", b"{}", t0), Seen::New);
        let busy = keys.check("k1", "/api/publish", b"{}", t0);
        assert!(matches!(busy, Seen::Refused(Reply { status: 409, .. })), "{busy:?}");
        let reply = Reply::ok(json!({ "id": "ab:1" }));
        keys.answered("k1", &reply);
        assert_eq!(keys.check("k1", "/api/publish", b"{}", t0 + KEEP_FOR / 2), Seen::Again(reply));
        let other = keys.check("k1", "/api/publish", b"{\"x\":1}", t0);
        assert!(matches!(other, Seen::Refused(Reply { status: 422, .. })), "{other:?}");
        assert_eq!(keys.check("k1", "/api/publish", b"{}", t0 + KEEP_FOR), Seen::New, "forgotten after");
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(keys.check(&long, "/", b"", t0), Seen::Refused(Reply { status: 400, .. })));
    }

    #[test]
    fn at_most_max_keys_are_held_and_the_oldest_go_first() {
        let (mut keys, t0) = (Idempotency::default(), Instant::now());
        for i in 0..MAX_KEYS + 10 {
            assert_eq!(keys.check(&format!("key-{i}"), "/api/kick", b"{}", t0), Seen::New);
        }
        assert_eq!(keys.len(), MAX_KEYS);
        assert_eq!(keys.check("key-0", "/api/kick", b"{}", t0), Seen::New, "the oldest was pushed out");
        assert!(matches!(
            keys.check(&format!("key-{}", MAX_KEYS + 9), "/api/kick", b"{}", t0),
            Seen::Refused(_)
        ));
    }
}
