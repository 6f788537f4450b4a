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
//! small as a few dozen messages, whatever a turn says. Batches live within a turn: they are
//! queued at its end (or earlier), so what waits on Redis is counted, and bounded, as before.

use std::rc::Rc;

use crate::broker::Origin;
use crate::chat::Stored;

/// Messages in one say-script call, at most.
pub const MAX_BATCH_MESSAGES: usize = 64;
/// Bytes of bodies, origins and deletes in one call, at most (unless one message alone is
/// larger: it then goes alone).
pub const MAX_BATCH_BYTES: usize = 64 << 10;

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

/// The batches open this turn, one per room at most, in the order their rooms were first said.
#[derive(Default)]
pub(super) struct Batches {
    open: Vec<Batch>,
}

impl Batches {
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
