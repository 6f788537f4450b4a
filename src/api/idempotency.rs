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
    /// A request to `path` with `body` under `key`, from the holder of API key `caller` (the
    /// same key from two applications is two keys' worth of requests, not one).
    pub fn check(&mut self, key: &str, caller: &[u8], path: &str, body: &[u8], now: Instant) -> Seen {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            let why = format!("Idempotency-Key: 1 to {MAX_KEY_LEN} bytes");
            return Seen::Refused(Reply::error(400, why));
        }
        self.forget_expired(now);
        let fingerprint = fingerprint(caller, path, body);
        match self.entries.get(key) {
            Some(entry) if entry.fingerprint != fingerprint => {
                Seen::Refused(Reply::error(422, "Idempotency-Key already used for another request"))
            }
            Some(Entry { reply: Some(reply), .. }) => Seen::Again(reply.clone()),
            Some(Entry { reply: None, .. }) => {
                Seen::Refused(Reply::error(409, "a request with this Idempotency-Key is being answered"))
            }
            None => {
                if !self.make_room() {
                    let why = "too many Idempotency-Keys being answered at once: retry in a moment";
                    return Seen::Refused(Reply::error(503, why));
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

    /// Room for one more key: the oldest answered keys go (a key still being answered is
    /// kept, or its retry would be carried out twice). False if every key is being answered.
    fn make_room(&mut self) -> bool {
        let mut kept = VecDeque::new();
        while self.entries.len() >= MAX_KEYS {
            let Some((since, oldest)) = self.order.pop_front() else { break };
            match self.entries.get(&oldest) {
                Some(entry) if entry.since == since && entry.reply.is_none() => {
                    kept.push_back((since, oldest))
                }
                Some(entry) if entry.since == since => {
                    self.entries.remove(&oldest);
                }
                _ => {}
            }
        }
        // The keys still being answered go back to the front, oldest first.
        while let Some(entry) = kept.pop_back() {
            self.order.push_front(entry);
        }
        self.entries.len() < MAX_KEYS
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

fn fingerprint(caller: &[u8], path: &str, body: &[u8]) -> u64 {
    // The standard hasher with its fixed keys: the same request hashes the same for the
    // process's life, which is as long as a key is kept.
    let mut hasher = DefaultHasher::new();
    (caller, path, body).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_answers_its_first_reply_again_for_five_minutes() {
        let (mut keys, t0) = (Idempotency::default(), Instant::now());
        assert_eq!(keys.check("k1", b"app", "/api/publish", b"{}", t0), Seen::New);
        let busy = keys.check("k1", b"app", "/api/publish", b"{}", t0);
        assert!(matches!(busy, Seen::Refused(Reply { status: 409, .. })), "{busy:?}");
        let reply = Reply::ok(json!({ "id": "ab:1" }));
        keys.answered("k1", &reply);
        assert_eq!(keys.check("k1", b"app", "/api/publish", b"{}", t0 + KEEP_FOR / 2), Seen::Again(reply));
        let other = keys.check("k1", b"app", "/api/publish", b"{\"x\":1}", t0);
        assert!(matches!(other, Seen::Refused(Reply { status: 422, .. })), "{other:?}");
        assert_eq!(
            keys.check("k1", b"app", "/api/publish", b"{}", t0 + KEEP_FOR),
            Seen::New,
            "forgotten after"
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(keys.check(&long, b"app", "/", b"", t0), Seen::Refused(Reply { status: 400, .. })));
    }

    #[test]
    fn at_most_max_keys_are_held_the_oldest_answered_go_first() {
        let (mut keys, t0) = (Idempotency::default(), Instant::now());
        let answered = Reply::ok(json!({ "kicked": 1 }));
        for i in 0..MAX_KEYS {
            assert_eq!(keys.check(&format!("key-{i}"), b"app", "/api/kick", b"{}", t0), Seen::New);
            if i > 0 {
                keys.answered(&format!("key-{i}"), &answered);
            }
        }
        // key-0 is still being answered: the oldest answered one (key-1) makes room.
        assert_eq!(keys.check("new", b"app", "/api/kick", b"{}", t0), Seen::New);
        assert_eq!(keys.len(), MAX_KEYS);
        let busy = keys.check("key-0", b"app", "/api/kick", b"{}", t0);
        assert!(matches!(busy, Seen::Refused(Reply { status: 409, .. })), "kept while answered: {busy:?}");
        assert_eq!(keys.check("key-1", b"app", "/api/kick", b"{}", t0), Seen::New, "pushed out");
        let other_caller = keys.check("key-5", b"other app", "/api/kick", b"{}", t0);
        assert!(matches!(other_caller, Seen::Refused(Reply { status: 422, .. })), "{other_caller:?}");
    }

    #[test]
    fn keys_all_being_answered_refuse_a_new_one() {
        let (mut keys, t0) = (Idempotency::default(), Instant::now());
        for i in 0..MAX_KEYS {
            assert_eq!(keys.check(&format!("key-{i}"), b"app", "/api/kick", b"{}", t0), Seen::New);
        }
        let full = keys.check("one more", b"app", "/api/kick", b"{}", t0);
        assert!(matches!(full, Seen::Refused(Reply { status: 503, .. })), "{full:?}");
        assert_eq!(keys.len(), MAX_KEYS);
    }
}
