//! A room's recent messages and the ids that name them.
//!
//! Every room message (text or `/me` action) gets an id `EPOCH:SEQ`: `SEQ` counts up by one per
//! message in the room, and `EPOCH` is a short random string drawn when the room's history
//! begins. A sequence number is therefore meaningful only within its epoch: a room whose
//! history was lost (a restart without `--data-dir`, an empty room evicted) starts a new epoch,
//! and a client holding an id from the old one learns that it cannot resume.
//!
//! [`History`] keeps the last N messages of one room and answers "everything after this id",
//! or says that it cannot (unknown epoch, or messages after the id already trimmed).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

/// Characters of a fresh epoch: lower-case letters and digits, so an id needs no escaping in a
/// URL query, a JSON string or a text line.
const EPOCH_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const EPOCH_LEN: usize = 8;
/// Longest epoch accepted from a client or a store (ours are [`EPOCH_LEN`]).
const MAX_EPOCH_LEN: usize = 32;

/// A fresh random epoch (8 characters: 41 bits, from the standard library's per-process
/// random keys, which come from the operating system).
pub fn new_epoch() -> Rc<str> {
    let mut bits = RandomState::new().hash_one(std::time::SystemTime::now());
    let mut epoch = String::with_capacity(EPOCH_LEN);
    for _ in 0..EPOCH_LEN {
        epoch.push(EPOCH_ALPHABET[(bits % EPOCH_ALPHABET.len() as u64) as usize] as char);
        bits /= EPOCH_ALPHABET.len() as u64;
    }
    Rc::from(epoch)
}

/// A message id as a client sends it back (`since=EPOCH:SEQ`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageId {
    pub epoch: String,
    pub seq: u64,
}

impl MessageId {
    /// Reads `EPOCH:SEQ`; None if it is not of that form.
    pub fn parse(id: &str) -> Option<Self> {
        let (epoch, seq) = id.split_once(':')?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= MAX_EPOCH_LEN
            && epoch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let seq = seq.parse().ok().filter(|_| valid_epoch)?;
        Some(Self { epoch: epoch.to_string(), seq })
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// The fixed cost of a kept message: the message with its reference counts, its slot in the
/// room's queue, and the allocator's headers of its two allocations (the message and its text).
pub const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Stored>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Rc<Stored>>()
    + 2 * 16;

/// One kept message. The nick is shared with its sender while the sender is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, when the server took the message.
    pub ts: u64,
    pub from: Rc<str>,
    pub text: Box<str>,
    pub kind: Kind,
    /// Its author changed it since (`/edit`): `text` is the new text.
    pub edited: bool,
    /// Who said it, beyond its nick: 0 for a signed-in member (the nick is its token's), else
    /// the number of the connection that said it, so that whoever holds the nick later cannot
    /// `/edit` or `/delete` it. Not kept by the store: after a restart only signed-in users
    /// change what they said before.
    pub author: u64,
    /// The members it names with `@NICK`, as they hold their nicks (see `mentions.rs`).
    pub mentions: Box<[Rc<str>]>,
}

/// What a room message is: who said it, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// A member's chat line.
    #[default]
    Line,
    /// A member's `/me` action.
    Action,
    /// An application's message, through the HTTP API (`POST /api/publish`): its `from` is
    /// the name the application gave, not a member's nick.
    Api,
    /// `/edit`: message `target` of the room now reads as this event's text.
    Edit { target: u64 },
    /// `/delete`: message `target` of the room is gone.
    Delete { target: u64 },
}

impl Kind {
    /// The kind as the store writes it (a stable number), and the message it is about.
    pub fn code(self) -> (u8, u64) {
        match self {
            Self::Line => (0, 0),
            Self::Action => (1, 0),
            Self::Api => (2, 0),
            Self::Edit { target } => (3, target),
            Self::Delete { target } => (4, target),
        }
    }

    /// The kind a stored number stands for (an unknown one is read as a chat line; the
    /// store's layout version keeps a later kind from reaching here).
    pub fn from_code(code: u8, target: u64) -> Self {
        match code {
            1 => Self::Action,
            2 => Self::Api,
            3 => Self::Edit { target },
            4 => Self::Delete { target },
            _ => Self::Line,
        }
    }

    /// An edit or a delete: an event about another message, not a message of its own.
    pub fn is_change(self) -> bool {
        matches!(self, Self::Edit { .. } | Self::Delete { .. })
    }

    /// A message its author may change: a chat line or an action.
    pub fn is_members(self) -> bool {
        matches!(self, Self::Line | Self::Action)
    }
}

impl Stored {
    /// What the message costs the history, for the memory bound documented in PROTOCOL.md:
    /// its text, its nick (counted even when shared) and the fixed part.
    pub fn cost(&self) -> usize {
        let mentions: usize =
            self.mentions.iter().map(|nick| nick.len() + 2 * std::mem::size_of::<usize>()).sum();
        MESSAGE_OVERHEAD + self.text.len() + self.from.len() + mentions
    }
}

/// The answer to "what came after this id".
#[derive(Debug, PartialEq, Eq)]
pub struct Replay<'a> {
    pub messages: Vec<&'a Rc<Stored>>,
    /// Every message after the client's id is among `messages`: nothing was missed.
    pub recovered: bool,
}

/// The last messages of one room, with its epoch and sequence.
#[derive(Debug)]
pub struct History {
    epoch: Rc<str>,
    /// The sequence number the next message gets (the first is 1).
    next_seq: u64,
    kept: VecDeque<Rc<Stored>>,
    /// At most this many are kept (`--history`).
    limit: usize,
    /// What the kept messages cost (see [`Stored::cost`]), kept up to date.
    cost: usize,
}

impl History {
    /// A new history, or one restored from the store: `next_seq` continues its sequence.
    pub fn new(epoch: Rc<str>, next_seq: u64, limit: usize) -> Self {
        Self { epoch, next_seq: next_seq.max(1), kept: VecDeque::new(), limit, cost: 0 }
    }

    pub fn epoch(&self) -> &Rc<str> {
        &self.epoch
    }

    /// The sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Takes a new message; returns it, with its sequence number assigned. The oldest kept
    /// message goes once more than `limit` are kept.
    pub fn push(&mut self, ts: u64, from: Rc<str>, text: &str, kind: Kind) -> Rc<Stored> {
        let stored = Rc::new(Stored {
            author: 0,
            edited: false,
            seq: self.next_seq,
            ts,
            from,
            text: text.into(),
            kind,
            mentions: Box::new([]),
        });
        self.keep(stored.clone());
        stored
    }

    /// Puts back a message read from the store (in order, oldest first).
    pub fn restore(&mut self, stored: Stored) {
        self.keep(Rc::new(stored));
    }

    /// The kept message numbered `seq`, if it is still kept.
    pub fn get(&self, seq: u64) -> Option<&Rc<Stored>> {
        let at = self.kept.binary_search_by_key(&seq, |m| m.seq).ok()?;
        self.kept.get(at)
    }

    /// An edit or a delete takes effect on the message it is about, if it is kept: an edited
    /// message is kept with its new text (and `edited`); a deleted one is dropped, and so are
    /// the edits of it, whose text was its text (none of it stays in memory). An edit by
    /// another than the message's author (a name reused, an id of another epoch) is not
    /// applied.
    fn apply(&mut self, change: &Stored) {
        let (Kind::Edit { target } | Kind::Delete { target }) = change.kind else { return };
        let Ok(at) = self.kept.binary_search_by_key(&target, |m| m.seq) else { return };
        let old = self.kept[at].clone();
        if old.kind.is_change() {
            return;
        }
        if let Kind::Edit { .. } = change.kind {
            if old.from != change.from {
                return;
            }
            let edited = Stored { text: change.text.clone(), edited: true, ..(*old).clone() };
            self.cost = self.cost - old.cost() + edited.cost();
            self.kept[at] = Rc::new(edited);
            return;
        }
        let mut freed = 0;
        self.kept.retain(|m| {
            let gone = m.seq == target || m.kind == Kind::Edit { target };
            freed += if gone { m.cost() } else { 0 };
            !gone
        });
        self.cost -= freed;
    }

    /// Keeps a message numbered elsewhere (by Redis, in cluster mode), shared with its sender.
    pub fn keep(&mut self, stored: Rc<Stored>) {
        self.next_seq = self.next_seq.max(stored.seq.saturating_add(1));
        self.apply(&stored);
        if self.limit == 0 {
            return;
        }
        if self.kept.len() == self.limit {
            if let Some(oldest) = self.kept.pop_front() {
                self.cost -= oldest.cost();
            }
        }
        self.cost += stored.cost();
        self.kept.push_back(stored);
    }

    /// The messages after `since`, and whether that is all of them. Without `since`, or for an
    /// id this history cannot continue from (another epoch, a sequence number it never gave
    /// out, or one whose successors were trimmed), everything kept, not recovered.
    pub fn after(&self, since: Option<&MessageId>) -> Replay<'_> {
        let continuable = since.filter(|id| {
            let oldest_kept = self.kept.front().map_or(self.next_seq, |m| m.seq);
            *id.epoch == *self.epoch && id.seq < self.next_seq && id.seq + 1 >= oldest_kept
        });
        match continuable {
            Some(id) => {
                let start = self.kept.partition_point(|m| m.seq <= id.seq);
                Replay { messages: self.kept.range(start..).collect(), recovered: true }
            }
            None => Replay { messages: self.kept.iter().collect(), recovered: false },
        }
    }

    /// Up to `count` of the messages kept before message `id`, oldest first, and whether older
    /// ones are kept still; None if `id` is not of this history (another epoch, or a sequence
    /// number it never gave out).
    pub fn before(&self, id: &MessageId, count: usize) -> Option<(Vec<&Rc<Stored>>, bool)> {
        if *id.epoch != *self.epoch || id.seq >= self.next_seq {
            return None;
        }
        let end = self.kept.partition_point(|m| m.seq < id.seq);
        let start = end.saturating_sub(count);
        Some((self.kept.range(start..end).collect(), start > 0))
    }

    /// The id of the newest message, if the room has had one.
    pub fn last_id(&self) -> Option<MessageId> {
        (self.next_seq > 1).then(|| self.resume_point())
    }

    /// Where a client that has seen everything resumes from: the newest message's id, or
    /// `EPOCH:0` before the first message (so a client resumes within this epoch even then).
    pub fn resume_point(&self) -> MessageId {
        MessageId { epoch: self.epoch.to_string(), seq: self.next_seq - 1 }
    }

    /// Drops the oldest kept message (to fit a memory budget); returns what it cost.
    pub fn trim_oldest(&mut self) -> usize {
        let cost = self.kept.pop_front().map_or(0, |m| m.cost());
        self.cost -= cost;
        cost
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// What the kept messages cost (see [`Stored::cost`]).
    pub fn cost(&self) -> usize {
        self.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(limit: usize, messages: u64) -> History {
        let mut h = History::new(Rc::from("ep0ch"), 1, limit);
        for i in 1..=messages {
            h.push(i, Rc::from("alice"), &format!("m{i}"), Kind::Line);
        }
        h
    }

    fn seqs(replay: &Replay) -> Vec<u64> {
        replay.messages.iter().map(|m| m.seq).collect()
    }

    fn id(epoch: &str, seq: u64) -> MessageId {
        MessageId { epoch: epoch.into(), seq }
    }

    #[test]
    fn ids_read_back_and_junk_is_refused() {
        assert_eq!(MessageId::parse("k3f9:42"), Some(id("k3f9", 42)));
        assert_eq!(MessageId::parse("k3f9:42").unwrap().to_string(), "k3f9:42");
        for junk in ["", ":1", "k3f9", "k3f9:", "k3f9:-1", "K3F9:1", "k 3:1", "a:1:2", &"a".repeat(33)] {
            assert_eq!(MessageId::parse(junk), None, "{junk:?}");
        }
        let epoch = new_epoch();
        assert_eq!(epoch.len(), EPOCH_LEN);
        assert!(MessageId::parse(&format!("{epoch}:1")).is_some());
    }

    #[test]
    fn keeps_the_last_n_and_numbers_every_message() {
        let h = history(3, 5);
        assert_eq!(seqs(&h.after(None)), [3, 4, 5]);
        assert_eq!(h.last_id(), Some(id("ep0ch", 5)));
        assert_eq!(h.next_seq(), 6);
        assert_eq!(history(0, 5).after(None).messages.len(), 0, "history off keeps nothing");
        assert_eq!(history(0, 5).last_id(), Some(id("ep0ch", 5)), "but ids still count");
    }

    #[test]
    fn resumes_exactly_after_a_kept_id() {
        let h = history(3, 5);
        for (since, expected) in [(2, vec![3, 4, 5]), (3, vec![4, 5]), (4, vec![5]), (5, vec![])] {
            let replay = h.after(Some(&id("ep0ch", since)));
            assert!(replay.recovered, "since {since}");
            assert_eq!(seqs(&replay), expected, "since {since}");
        }
    }

    #[test]
    fn cannot_resume_across_a_gap_an_epoch_or_the_future() {
        let h = history(3, 5);
        for since in [id("ep0ch", 1), id("ep0ch", 0), id("other", 4), id("ep0ch", 6), id("ep0ch", 99)] {
            let replay = h.after(Some(&since));
            assert!(!replay.recovered, "{since}");
            assert_eq!(seqs(&replay), [3, 4, 5], "{since}: everything kept instead");
        }
        let empty = History::new(Rc::from("ep0ch"), 1, 3);
        assert!(empty.after(Some(&id("ep0ch", 0))).recovered, "0: from the epoch's start, nothing missed");
        assert!(!empty.after(Some(&id("ep0ch", 1))).recovered, "1 was never sent");
    }

    #[test]
    fn a_restored_history_continues_its_sequence() {
        let mut h = History::new(Rc::from("ep0ch"), 1, 2);
        for seq in [7, 8, 9] {
            h.restore(Stored {
                author: 0,
                edited: false,
                seq,
                ts: 0,
                from: Rc::from("a"),
                text: "x".into(),
                kind: Kind::Line,
                mentions: Box::new([]),
            });
        }
        assert_eq!(seqs(&h.after(None)), [8, 9]);
        assert_eq!(h.push(10, Rc::from("a"), "y", Kind::Line).seq, 10);
        assert!(h.after(Some(&id("ep0ch", 8))).recovered);
    }
}
