//! Who is banned, until when, and why: a signed-in user by its nick (its token's `sub`), a
//! guest by its address. The chat records bans (`/ban`, `/unban`), the handshake consults them
//! (a banned client gets 403 before it is a WebSocket), and a durable store keeps them across
//! restarts (`crate::store`). Expired bans are dropped as they are met.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::names::fold;

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanKey {
    /// A signed-in user, by its nick's folded form.
    User(String),
    /// A guest's address.
    Address(IpAddr),
}

impl BanKey {
    /// The key as a store writes it: `user:NAME` or `address:IP`.
    pub fn to_store(&self) -> String {
        match self {
            Self::User(name) => format!("user:{name}"),
            Self::Address(address) => format!("address:{address}"),
        }
    }

    pub fn from_store(text: &str) -> Option<Self> {
        match text.split_once(':')? {
            ("user", name) => Some(Self::User(name.to_string())),
            ("address", address) => address.parse().ok().map(Self::Address),
            _ => None,
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The nick it was given to (a guest's, for an address ban).
    pub nick: String,
    /// When it ends, in milliseconds since the Unix epoch.
    pub until_ms: u64,
    pub reason: String,
    /// The moderator who gave it.
    pub by: String,
}

impl Ban {
    /// What a refused client is told: the reason and the time left.
    pub fn refusal(&self, now_ms: u64) -> String {
        let left_s = self.until_ms.saturating_sub(now_ms).div_ceil(1000);
        let left = match left_s {
            s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
            s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
            s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
            s => format!("{s}s"),
        };
        match self.reason.is_empty() {
            true => format!("you are banned from this chat for {left} more"),
            false => format!("you are banned from this chat for {left} more: {}", self.reason),
        }
    }
}

/// Every ban in force. A B-tree, not a hash table: it grows a node at a time, where a hash
/// table doubles and moves every ban in one insert (with half a million bans read from Redis,
/// a 100 ms stall of the loop).
#[derive(Debug, Default)]
pub struct Bans {
    entries: BTreeMap<BanKey, Ban>,
}

impl Bans {
    /// The ban that refuses a client signed in as `sub` (or a guest, at `address`), if any.
    pub fn check(&self, sub: Option<&str>, address: IpAddr, now_ms: u64) -> Option<&Ban> {
        let key = match sub {
            Some(sub) => BanKey::User(fold(sub)),
            None => BanKey::Address(address),
        };
        self.entries.get(&key).filter(|ban| ban.until_ms > now_ms)
    }

    /// How many bans are held (ended ones included, until they are met and dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, key: BanKey, ban: Ban) {
        self.entries.insert(key, ban);
    }

    /// Lifts one ban (another process lifted it).
    pub fn remove(&mut self, key: &BanKey) {
        self.entries.remove(key);
    }

    /// Lifts every ban given to `nick` (a user's, or a guest's address ban); returns their keys.
    pub fn remove_nick(&mut self, nick: &str) -> Vec<BanKey> {
        let folded = fold(nick);
        let keys: Vec<BanKey> = self
            .entries
            .iter()
            .filter(|(_, ban)| fold(&ban.nick) == folded)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            self.entries.remove(key);
        }
        keys
    }

    /// Drops the bans that have ended; returns their keys.
    pub fn expire(&mut self, now_ms: u64) -> Vec<BanKey> {
        let ended: Vec<BanKey> = self
            .entries
            .iter()
            .filter(|(_, ban)| ban.until_ms <= now_ms)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &ended {
            self.entries.remove(key);
        }
        ended
    }

    /// The bans in force, by nick.
    pub fn active(&self, now_ms: u64) -> Vec<(&BanKey, &Ban)> {
        let mut active: Vec<(&BanKey, &Ban)> =
            self.entries.iter().filter(|(_, b)| b.until_ms > now_ms).collect();
        active.sort_by(|a, b| a.1.nick.cmp(&b.1.nick).then(a.0.cmp(b.0)));
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(nick: &str, until_ms: u64) -> Ban {
        Ban { nick: nick.into(), until_ms, reason: "spam".into(), by: "root".into() }
    }

    #[test]
    fn a_ban_holds_until_it_ends_for_the_user_or_the_guests_address() {
        let mut bans = Bans::default();
        let here: IpAddr = "10.0.0.7".parse().unwrap();
        bans.insert(BanKey::User(fold("alice")), ban("alice", 10_000));
        bans.insert(BanKey::Address(here), ban("guest-3", 20_000));
        assert!(
            bans.check(Some("ALICE"), "10.9.9.9".parse().unwrap(), 5_000).is_some(),
            "by nick, any address"
        );
        assert!(bans.check(Some("alice"), here, 10_000).is_none(), "over at until_ms");
        assert!(bans.check(None, here, 15_000).is_some(), "a guest at the banned address");
        assert!(bans.check(Some("bob"), here, 15_000).is_none(), "a signed-in user is judged by its nick");
        assert_eq!(
            bans.check(None, here, 15_000).unwrap().refusal(15_000),
            "you are banned from this chat for 5s more: spam"
        );
        assert_eq!(bans.remove_nick("Guest-3"), [BanKey::Address(here)]);
        assert_eq!(bans.expire(10_001), [BanKey::User(fold("alice"))]);
        assert!(bans.active(0).is_empty());
        for key in [BanKey::User("a".into()), BanKey::Address(here), BanKey::Address("::1".parse().unwrap())]
        {
            assert_eq!(BanKey::from_store(&key.to_store()), Some(key));
        }
    }
}
