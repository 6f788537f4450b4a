//! The bans in force, read from Redis when a link (re)connects: a page at a time (`HSCAN`), and
//! handed to the chat a turn's share at a time, so that however many bans Redis holds, no reply
//! passes the bounds on one reply and no turn holds the other clients up for long.
//!
//! No IO here: the broker asks for the pages this says to ask for and hands it the replies.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::presence;
use super::resp::{self, Frame};
use crate::broker::Notice;
use crate::chat::BanKey;

/// Bans asked for per page (`HSCAN`'s COUNT, which Redis takes as a hint). One reply of every
/// ban (`HGETALL`) passed the bounds on a reply (a million frames, 64 MiB) at about 450,000 bans,
/// and the process could then never link; a page is about 1.5 MB and 20,000 frames. The next
/// page is asked for once fewer than a page are left to hand over, so at most two are held.
pub const BANS_PER_PAGE: usize = 10_000;
/// Bans handed to the chat per turn: each costs a JSON parse and an insert, about a microsecond
/// with half a million held, so a Redis holding that many (a hostile one, or years of
/// moderation) costs the other clients about 5 ms a turn, not a quarter second.
pub const BANS_PER_TURN: usize = 5_000;

/// The bans being read from Redis on this link.
#[derive(Default)]
pub struct BansLoad {
    /// Read, not yet handed to the chat: each a ban's JSON.
    queued: VecDeque<Frame>,
    /// The cursor of the next page, not yet asked for (None: asked for, or the last was read).
    next: Option<Bytes>,
    /// A page was asked for and has not come.
    asked: bool,
    /// Bans given or lifted on the bans channel while loading: newer than a page's copy, which
    /// is skipped (a page read before an `/unban` must not bring the ban back).
    settled: HashSet<BanKey>,
}

impl BansLoad {
    /// Whether bans are still to be handed over or asked for (the loop must come back).
    pub fn has_work(&self) -> bool {
        !self.queued.is_empty() || self.next.is_some()
    }

    fn loading(&self) -> bool {
        self.asked || self.has_work()
    }

    /// A page is asked for.
    pub fn asked(&mut self) {
        self.asked = true;
    }

    /// A page came: `[cursor, [field, value, ...]]`; false if the reply is something else.
    pub fn page(&mut self, frame: Frame) -> bool {
        let page = match frame {
            Frame::Array(mut parts) if parts.len() == 2 => parts.pop().zip(parts.pop()),
            _ => None,
        };
        let Some((Frame::Array(items), cursor)) = page else { return false };
        self.asked = false;
        self.next = resp::bytes(&cursor).filter(|c| &c[..] != b"0").cloned();
        self.queued.extend(items.into_iter().skip(1).step_by(2));
        true
    }

    /// The bans channel gave or lifted `key` (the notice is the chat's already).
    pub fn heard(&mut self, key: &BanKey) {
        if self.loading() {
            self.settled.insert(key.clone());
        }
    }

    /// A turn's share of the bans, as notices for the chat; the cursor of the next page if it
    /// is time to ask for it.
    pub fn hand_over(&mut self, notices: &mut Vec<Notice>) -> Option<Bytes> {
        let share = self.queued.len().min(BANS_PER_TURN);
        for json in self.queued.drain(..share) {
            if let Some((key, ban)) = resp::bytes(&json).and_then(|json| presence::parse_ban(json)) {
                if self.settled.is_empty() || !self.settled.contains(&key) {
                    notices.push(Notice::Banned { key, ban });
                }
            }
        }
        let next = if self.queued.len() < BANS_PER_PAGE { self.next.take() } else { None };
        if !self.settled.is_empty() && !self.loading() && next.is_none() {
            self.settled = HashSet::new();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Ban;

    fn bulk(text: &str) -> Frame {
        Frame::BulkString(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn key(i: usize) -> BanKey {
        BanKey::Address([10, 0, (i >> 8) as u8, i as u8].into())
    }

    /// A page of bans `range` (field, value pairs) with `cursor`.
    fn page(range: std::ops::Range<usize>, cursor: &str) -> Frame {
        let ban = Ban { nick: "g".into(), until_ms: u64::MAX, reason: String::new(), by: "root".into() };
        let items = range.flat_map(|i| [bulk(&key(i).to_store()), bulk(&presence::ban_json(&key(i), &ban))]);
        Frame::Array(vec![bulk(cursor), Frame::Array(items.collect())])
    }

    fn banned(notices: &[Notice]) -> Vec<BanKey> {
        notices
            .iter()
            .filter_map(|n| if let Notice::Banned { key, .. } = n { Some(key.clone()) } else { None })
            .collect()
    }

    #[test]
    fn pages_are_handed_over_a_share_a_turn_and_the_next_asked_for_when_one_is_left() {
        let mut load = BansLoad::default();
        load.asked();
        assert!(load.page(page(0..BANS_PER_PAGE, "17")));
        let mut notices = Vec::new();
        // Half handed over: less than a page is left, so the next page is asked for now.
        assert_eq!(load.hand_over(&mut notices).as_deref(), Some(&b"17"[..]));
        assert_eq!(banned(&notices), (0..BANS_PER_TURN).map(key).collect::<Vec<_>>());
        load.asked();
        assert!(load.page(page(BANS_PER_PAGE..BANS_PER_PAGE + 3, "0")));
        while load.has_work() {
            assert_eq!(load.hand_over(&mut notices), None, "the last page had cursor 0");
        }
        assert_eq!(banned(&notices), (0..BANS_PER_PAGE + 3).map(key).collect::<Vec<_>>());
        assert!(!load.page(bulk("not a page")), "anything else is refused");
    }

    #[test]
    fn a_ban_heard_on_the_channel_while_loading_wins_over_a_pages_copy() {
        let mut load = BansLoad::default();
        load.asked();
        // Lifted by /unban (its notice went to the chat) after Redis read the page.
        load.heard(&key(1));
        assert!(load.page(page(0..3, "0")));
        let mut notices = Vec::new();
        load.hand_over(&mut notices);
        assert_eq!(banned(&notices), [key(0), key(2)]);
        // Loaded: the channel's bans are no longer remembered.
        load.heard(&key(5));
        assert!(load.settled.is_empty());
    }
}
