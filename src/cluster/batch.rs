//! What a loop turn says in rooms, gathered by room: the messages a turn says in one room go to
//! Redis as one call of the say script (a *batch*), which numbers them consecutively, keeps
//! each in the log and publishes them as one payload (`room.rs`). Redis's cost per call and per
//! publish is then paid once per room and turn rather than once per message, and each process
//! with members reads one push for the lot.
//!
//! **Order.** A room's messages keep the order the chat said them in (a batch is in that order,
//! and its numbers are consecutive); so does everything else: before any other request is
//! turned into commands, the open batches are queued (`commands.rs`), so a message and the
//! announcement after it (a `/nick` in the same turn) reach Redis, and every member, in that
//! order. Only rooms' batches among themselves may leave in another order than said, and a
//! room's channel carries its own messages only.
//!
//! **Bounds.** A batch holds at most [`MAX_BATCH_MESSAGES`] messages and [`MAX_BATCH_BYTES`]
//! bytes of bodies (a larger message goes alone): past either, it is queued and the next
//! message starts another. So a published payload, and a script's run inside Redis, stay as
//! small as a few dozen messages, whatever a turn says.
//!
//! **Lingering** (`--redis-linger`). A busy room is said in one message a turn even when its
//! messages come a millisecond apart, and a call per message costs Redis a wake-up, a read, the
//! script and a write to every subscribed process. So a batch of *one* message waits for
//! company when its room's previous call left less than the linger ago and ended with another
//! sender's message: it goes with the next message said there, or when the linger since that
//! call has passed, whichever comes first. A quiet room's message (no call within the linger)
//! goes at the end of its turn, as does every batch of two or more (a turn that already
//! gathered several needs no wait), and so does the message of a sender talking alone (it is
//! held until its line is back, so its own next line cannot be the company, and it keeps the
//! pace of a round trip). The wait is paid only where several senders' calls would come closer
//! together than the linger, and is never longer than the linger.
//! Anything else asked of Redis queues the open batches first (order, above), and so do a
//! failing link and a leaving process. What lingers is at most one message per room, whose
//! sender is held (`flight.rs`) as if it were on its way.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::broker::Origin;
use crate::chat::Stored;

/// Messages in one say-script call, at most.
pub const MAX_BATCH_MESSAGES: usize = 64;
/// Bytes of bodies, origins and deletes in one call, at most (unless one message alone is
/// larger: it then goes alone).
pub const MAX_BATCH_BYTES: usize = 64 << 10;
/// `--redis-linger` unless set: at most this long a lone message waits for company. Two
/// processes sharing a room at 1,000 messages a second each see one every 2 ms: 5 ms pairs
/// them (docs/BENCHMARKS.md), at a latency a reader cannot tell.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// The longest `--redis-linger` allowed: well under the broker's reply timeout, which also
/// bounds how long a sender is held.
pub const MAX_LINGER: Duration = Duration::from_secs(1);

/// One message of a batch, with what the script takes for it.
pub(super) struct Said {
    pub(super) message: Stored,
    pub(super) origin: Origin,
    /// The message's JSON, as kept and published (`room::say_body`).
    pub(super) body: String,
    /// Its ORIGIN on the channel (`room::origin`).
    pub(super) tag: String,
    /// The log entry a delete removes, or "".
    pub(super) deleted: String,
}

impl Said {
    fn bytes(&self) -> usize {
        self.body.len() + self.tag.len() + self.deleted.len()
    }
}

/// The messages of one room, in the order said, for one script call.
pub(super) struct Batch {
    pub(super) room: Rc<str>,
    /// The room's name as shown, should the script start the room.
    pub(super) display: Rc<str>,
    pub(super) said: Vec<Said>,
    bytes: usize,
}

impl Batch {
    /// Its messages and who said them, without what the script takes.
    pub(super) fn messages(self) -> Vec<(Stored, Origin)> {
        self.said.into_iter().map(|said| (said.message, said.origin)).collect()
    }
}

/// The open batches, one per room at most, in the order their rooms were first said.
pub(super) struct Batches {
    open: Vec<Batch>,
    linger: Duration,
    /// When each room's last call was queued, and who said its last message, for those within
    /// the linger (pruned each turn).
    last_call: HashMap<Rc<str>, (Instant, Origin)>,
}

impl Default for Batches {
    fn default() -> Self {
        Self::new(DEFAULT_LINGER)
    }
}

impl Batches {
    /// No lone message waits longer than `linger` after its room's previous call (zero: none
    /// waits).
    pub(super) fn new(linger: Duration) -> Self {
        Self { open: Vec::new(), linger, last_call: HashMap::new() }
    }

    /// Adds a message to its room's batch. Returns that batch if it had no room for it (full
    /// in messages or bytes): it must be queued now, before the batch this message starts.
    pub(super) fn add(&mut self, room: Rc<str>, display: Rc<str>, said: Said) -> Option<Batch> {
        let bytes = said.bytes();
        // Few rooms are said in per turn: a scan beats a map's hashing.
        let Some(at) = self.open.iter().position(|b| b.room == room) else {
            self.open.push(Batch { room, display, said: vec![said], bytes });
            return None;
        };
        let batch = &mut self.open[at];
        if batch.said.len() < MAX_BATCH_MESSAGES && batch.bytes + bytes <= MAX_BATCH_BYTES {
            batch.said.push(said);
            batch.bytes += bytes;
            return None;
        }
        let fresh = Batch { room, display, said: vec![said], bytes };
        Some(std::mem::replace(batch, fresh))
    }

    /// Every open batch, in order, leaving none.
    pub(super) fn take(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.open)
    }

    /// The open batches that should not wait any longer at `now`, in order; the lone messages
    /// of rooms called within the linger stay open (see the module's doc).
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Batch> {
        let linger = self.linger;
        self.last_call.retain(|_, (at, _)| now.saturating_duration_since(*at) < linger);
        if self.last_call.is_empty() {
            return self.take();
        }
        let (due, waiting) =
            std::mem::take(&mut self.open).into_iter().partition(|b| self.due_at(b).is_none());
        self.open = waiting;
        due
    }

    /// When the first lingering batch must go, if any lingers.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.open.iter().filter_map(|b| self.due_at(b)).min()
    }

    /// `batch` was queued as a call at `now`: its room's next lone message may wait for
    /// company, unless it is the same sender's.
    pub(super) fn called(&mut self, batch: &Batch, now: Instant) {
        if let (false, Some(last)) = (self.linger.is_zero(), batch.said.last()) {
            self.last_call.insert(batch.room.clone(), (now, last.origin));
        }
    }

    /// When `batch` must go at the latest, if it may wait (the linger after its room's last
    /// call); None if it should go now. Only a lone message waits, and only after another
    /// sender's.
    fn due_at(&self, batch: &Batch) -> Option<Instant> {
        let [said] = &batch.said[..] else { return None };
        let (at, last) = self.last_call.get(&batch.room)?;
        (*last != said.origin).then_some(*at + self.linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::history::Kind;

    fn said(text: &str, client: usize) -> Said {
        let message = Stored {
            author: 0,
            edited: false,
            seq: 0,
            ts: 0,
            from: Rc::from("ann"),
            text: text.into(),
            kind: Kind::Line,
            mentions: Box::new([]),
        };
        Said {
            message,
            origin: Origin::Member(client),
            body: text.to_string(),
            tag: String::new(),
            deleted: String::new(),
        }
    }

    fn texts(batch: &Batch) -> Vec<String> {
        batch.said.iter().map(|s| s.message.text.to_string()).collect()
    }

    #[test]
    fn a_room_s_messages_gather_in_order_and_a_full_batch_is_handed_back() {
        let mut batches = Batches::default();
        let (lobby, dev): (Rc<str>, Rc<str>) = (Rc::from("lobby"), Rc::from("dev"));
        for i in 0..MAX_BATCH_MESSAGES {
            let room = if i % 2 == 0 { &lobby } else { &dev };
            assert!(batches.add(room.clone(), room.clone(), said(&i.to_string(), i)).is_none());
        }
        for i in MAX_BATCH_MESSAGES..2 * MAX_BATCH_MESSAGES {
            let full = batches.add(lobby.clone(), lobby.clone(), said(&i.to_string(), i));
            if i == MAX_BATCH_MESSAGES + MAX_BATCH_MESSAGES / 2 {
                let full = full.expect("the lobby's batch is full");
                let expected: Vec<String> = (0..MAX_BATCH_MESSAGES / 2)
                    .map(|k| 2 * k)
                    .chain(MAX_BATCH_MESSAGES..i)
                    .map(|k| k.to_string())
                    .collect();
                assert_eq!(texts(&full), expected);
            } else {
                assert!(full.is_none(), "at {i}");
            }
        }
        let open: Vec<_> = batches.take().into_iter().map(|b| (b.room.to_string(), b.said.len())).collect();
        assert_eq!(
            open,
            [("lobby".to_string(), MAX_BATCH_MESSAGES / 2), ("dev".to_string(), MAX_BATCH_MESSAGES / 2)]
        );
        assert!(batches.take().is_empty());
    }

    /// The batches due at `now`, as texts, each then queued as a call.
    fn go(batches: &mut Batches, now: Instant) -> Vec<Vec<String>> {
        let due = batches.take_due(now);
        due.iter().for_each(|batch| batches.called(batch, now));
        due.iter().map(texts).collect()
    }

    #[test]
    fn a_lone_message_lingers_only_after_another_sender_s_call_within_the_linger() {
        let linger = Duration::from_millis(2);
        let mut batches = Batches::new(linger);
        let (busy, quiet): (Rc<str>, Rc<str>) = (Rc::from("busy"), Rc::from("quiet"));
        let t0 = Instant::now();
        // Nothing called yet: a lone message goes at the end of its turn.
        batches.add(busy.clone(), busy.clone(), said("1", 1));
        assert_eq!(go(&mut batches, t0), [["1"]]);
        // Within the linger, after client 1's call: client 2's lone message waits, the quiet
        // room's goes.
        let t1 = t0 + Duration::from_micros(700);
        batches.add(busy.clone(), busy.clone(), said("2", 2));
        batches.add(quiet.clone(), quiet.clone(), said("q", 3));
        assert_eq!(go(&mut batches, t1), [["q"]]);
        assert_eq!(batches.next_due(), Some(t0 + linger));
        // Company: two messages go whatever the time.
        batches.add(busy.clone(), busy.clone(), said("3", 1));
        let t2 = t0 + Duration::from_micros(1500);
        assert_eq!(go(&mut batches, t2), [["2", "3"]]);
        assert_eq!(batches.next_due(), None);
        // Alone until the linger after the last call has passed: then it goes.
        batches.add(busy.clone(), busy.clone(), said("4", 2));
        assert!(go(&mut batches, t2 + linger - Duration::from_nanos(1)).is_empty());
        assert_eq!(batches.next_due(), Some(t2 + linger));
        assert_eq!(go(&mut batches, t2 + linger), [["4"]]);
        // A sender talking alone does not wait for itself.
        let t3 = t2 + linger + Duration::from_micros(100);
        batches.add(busy.clone(), busy.clone(), said("5", 2));
        assert_eq!(go(&mut batches, t3), [["5"]]);
        // Whatever lingers, `take` hands over (another command, a failure, leaving).
        batches.add(busy.clone(), busy.clone(), said("6", 1));
        assert!(go(&mut batches, t3).is_empty());
        assert_eq!(batches.take().iter().map(texts).collect::<Vec<_>>(), [["6"]]);
        // Every call older than the linger is forgotten.
        assert!(batches.take_due(t3 + linger).is_empty());
        assert!(batches.last_call.is_empty());
    }

    #[test]
    fn with_no_linger_every_batch_goes_at_the_end_of_its_turn() {
        let mut batches = Batches::new(Duration::ZERO);
        let room: Rc<str> = Rc::from("lobby");
        let now = Instant::now();
        for (text, client) in [("1", 1), ("2", 2)] {
            batches.add(room.clone(), room.clone(), said(text, client));
            assert_eq!(go(&mut batches, now), [[text]]);
        }
        assert_eq!(batches.next_due(), None);
    }

    #[test]
    fn a_batch_splits_at_its_byte_bound_and_a_big_message_goes_alone() {
        let mut batches = Batches::default();
        let room: Rc<str> = Rc::from("lobby");
        let half = "x".repeat(MAX_BATCH_BYTES / 2 - 8);
        for _ in 0..2 {
            assert!(batches.add(room.clone(), room.clone(), said(&half, 1)).is_none());
        }
        assert!(
            batches.add(room.clone(), room.clone(), said(&"w".repeat(16), 1)).is_none(),
            "up to the bound"
        );
        let full = batches.add(room.clone(), room.clone(), said("y", 1)).expect("past the byte bound");
        assert_eq!(full.said.len(), 3);
        let big = "z".repeat(MAX_BATCH_BYTES + 1);
        let full = batches.add(room.clone(), room.clone(), said(&big, 1)).expect("no room for a big one");
        assert_eq!(texts(&full), ["y"]);
        let full = batches.add(room.clone(), room.clone(), said("after", 1)).expect("the big one alone");
        assert_eq!(texts(&full), [big]);
        assert_eq!(batches.take().iter().map(texts).collect::<Vec<_>>(), [["after"]]);
    }
}
