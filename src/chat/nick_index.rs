//! The nick index: which connection here holds each nick. Every chat member has an entry, so
//! an entry is only its holder's 4-byte id (and the table's control byte): at 19,000 members
//! about 9 bytes a member, where a map from a 64-bit hash to a holder took 29. The table keeps
//! no key: an entry's hash is its holder's nick's, recomputed when the table grows, and a
//! lookup compares the nick itself (so two nicks with one hash never meet).
//!
//! That asks one thing of the chat: while a connection is indexed under a nick, the nick the
//! chat gives for it ([`Chat::nick`](super::Chat::nick)) is that nick, up to case folding. A
//! rename takes the old entry out (by holder, which needs no nick) before the new nick goes in.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::names::fold;
use super::ClientId;

/// A nick's hash, keyed per process: equal for nicks that are the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NickKey(u64);

#[derive(Default)]
pub struct NickIndex {
    holders: HashTable<u32>,
    hasher: RandomState,
}

impl NickIndex {
    /// The key of a nick (any case).
    pub fn key(&self, nick: &str) -> NickKey {
        NickKey(self.hasher.hash_one(fold(nick)))
    }

    /// Who holds `nick` (or the same name in another case); `nick_of` gives a holder's nick.
    pub fn get<'a>(&self, nick: &str, nick_of: impl Fn(ClientId) -> Option<&'a str>) -> Option<ClientId> {
        let folded = fold(nick);
        let hash = self.hasher.hash_one(&folded);
        let found = self
            .holders
            .find(hash, |&client| nick_of(client as ClientId).is_some_and(|held| fold(held) == folded));
        found.map(|&client| client as ClientId)
    }

    /// Whether `client` is indexed under the nick with this key.
    pub fn holds(&self, key: NickKey, client: ClientId) -> bool {
        self.holders.find(key.0, |&c| c as ClientId == client).is_some()
    }

    /// Indexes `client` (a slab key: far below 2^32) under the nick with this key; `nick_of`
    /// gives the others' nicks if the table grows.
    pub fn insert<'a>(
        &mut self,
        key: NickKey,
        client: ClientId,
        nick_of: impl Fn(ClientId) -> Option<&'a str>,
    ) {
        let hasher = &self.hasher;
        let rehash = |&c: &u32| nick_of(c as ClientId).map_or(0, |nick| hasher.hash_one(fold(nick)));
        self.holders.insert_unique(key.0, client as u32, rehash);
    }

    /// Takes `client`'s entry under the nick with this key out; false if there was none.
    pub fn remove(&mut self, key: NickKey, client: ClientId) -> bool {
        match self.holders.find_entry(key.0, |&c| c as ClientId == client) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives `client`'s entry under the nick with this key to `next` (who holds the same nick).
    pub fn hand_over(&mut self, key: NickKey, client: ClientId, next: ClientId) {
        if let Some(entry) = self.holders.find_mut(key.0, |&c| c as ClientId == client) {
            *entry = next as u32;
        }
    }

    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn shrink_to_fit<'a>(&mut self, nick_of: impl Fn(ClientId) -> Option<&'a str>) {
        let hasher = &self.hasher;
        self.holders.shrink_to_fit(|&c| nick_of(c as ClientId).map_or(0, |nick| hasher.hash_one(fold(nick))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_found_by_nick_in_any_case_and_survive_growth() {
        let nicks: Vec<String> = (0..1000).map(|i| format!("Nick{i}")).collect();
        let nick_of = |c: ClientId| nicks.get(c).map(String::as_str);
        let mut index = NickIndex::default();
        for (client, nick) in nicks.iter().enumerate() {
            index.insert(index.key(nick), client, nick_of);
        }
        assert_eq!(index.len(), 1000);
        assert_eq!(index.get("NICK7", nick_of), Some(7));
        assert_eq!(index.get("nick999", nick_of), Some(999));
        assert_eq!(index.get("nick1000", nick_of), None);
        assert!(index.holds(index.key("nick7"), 7) && !index.holds(index.key("nick7"), 8));
        assert!(index.remove(index.key("Nick7"), 7));
        assert!(!index.remove(index.key("Nick7"), 7));
        assert_eq!(index.get("nick7", nick_of), None);
        index.hand_over(index.key("nick8"), 8, 1008);
        assert!(index.holds(index.key("nick8"), 1008));
        index.shrink_to_fit(nick_of);
        assert_eq!(index.get("nick9", nick_of), Some(9));
    }

    #[test]
    fn a_holder_whose_nick_is_not_the_one_asked_for_is_not_found() {
        // Same hash, different nick: only possible by collision, here forced by a stale entry.
        let mut index = NickIndex::default();
        let held = ["ana", "ben"];
        index.insert(index.key("ana"), 0, |c| held.get(c).copied());
        assert_eq!(index.get("ana", |c| ["bob"].get(c).copied()), None);
    }
}
