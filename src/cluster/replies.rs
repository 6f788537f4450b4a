//! What Redis sends back, as the chat's notices: replies on the command link, matched in order
//! with what each command awaits ([`Expect`]), and pushes on the subscription link (room
//! payloads, this process's own channel, the bans channel).
//!
//! Presence answers speak of the other processes only (the chat adds its own members): entries
//! under this process's id are left out here.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use log::{debug, warn};

use super::broker::RedisBroker;
use super::expect::Expect;
use super::followed::Subscription;
use super::resp::{self, Frame};
use super::{bans, presence, room};
use crate::broker::{Direct, Kept, Notice, Origin};
use crate::chat::Stored;

impl RedisBroker {
    /// A reply on the command link, matched with the command it answers.
    pub(super) fn on_reply(&mut self, frame: Frame) -> io::Result<()> {
        let expected =
            self.pending.pop_front().ok_or_else(|| io::Error::other("a reply nobody asked for"))?;
        if let Some(e) = resp::error(&frame) {
            let why = format!("Redis refused a command ({expected:?}): {e}");
            // Still owed its answer: the link fails, and `fail` answers it here.
            self.pending.push_front(expected);
            return Err(io::Error::other(why));
        }
        match expected {
            Expect::Nothing => {}
            Expect::Said { ref room, ref said } => {
                if said.iter().all(|(_, origin)| matches!(origin, Origin::Member(_))) {
                    return Ok(());
                }
                let (first, epoch) = match &frame {
                    Frame::Array(parts) => {
                        (parts.first().and_then(resp::integer), parts.get(1).and_then(resp::text))
                    }
                    _ => (None, None),
                };
                let (Some(first), Some(epoch)) = (first, epoch) else {
                    // Still owed its answer: the link fails, and `fail` has it said here.
                    self.pending.push_front(expected);
                    return Err(io::Error::other("a published message was answered with something else"));
                };
                // The batch's messages are numbered from the first, in order.
                let epoch: Rc<str> = Rc::from(epoch);
                for (seq, (_, origin)) in (first.max(0) as u64..).zip(said) {
                    if let Origin::Api(ticket) = origin {
                        let (room, epoch) = (room.clone(), epoch.clone());
                        self.notices.push(Notice::Published { ticket: *ticket, room, epoch, seq });
                    }
                }
            }
            Expect::History { asker, room, .. } => {
                // A log this cannot read (a corrupt entry) is the caller's answer, not a reason
                // to drop the link every room's members rely on.
                let kept = match parse_loaded(room.clone(), room.clone(), &frame) {
                    Some(Notice::Loaded { display, epoch, top, messages: Some(messages), .. }) => {
                        Kept::There { display, epoch, top, messages }
                    }
                    _ if frame == Frame::Null => Kept::Nowhere,
                    _ => Kept::Unreadable,
                };
                self.notices.push(Notice::History { asker, room, kept });
            }
            Expect::Heartbeat => {
                if resp::integer(&frame) == Some(0) {
                    warn!(
                        "Redis at {}: this process's presence expired before its heartbeat; \
                         writing its members' presence again",
                        self.url
                    );
                    self.notices.push(Notice::Reclaim);
                }
            }
            Expect::Capability => {
                // An unknown command's entry is a null.
                self.sharded = matches!(&frame, Frame::Array(entries) if entries.first().is_some_and(|e| *e != Frame::Null));
                self.capability_known = true;
            }
            Expect::Loaded { room, display } => {
                if !self.followed.contains_key(&room) {
                    return Ok(()); // unfollowed meanwhile
                }
                let loaded = parse_loaded(room, display, &frame)
                    .ok_or_else(|| io::Error::other("a history load answered with something else"))?;
                self.notices.push(loaded);
            }
            Expect::GuestNumber { client, serial } => {
                let number = resp::integer(&frame)
                    .ok_or_else(|| io::Error::other("INCR answered with something else"))?;
                self.claim(client, Rc::from(format!("guest-{number}")), false, serial)?;
            }
            Expect::Claimed { client, nick, serial } => {
                let (held_by, markers) = match &frame {
                    Frame::Integer(1) => (None, Vec::new()),
                    // Granted, with a signed-in user's read markers.
                    Frame::Array(parts) if parts.first() == Some(&Frame::Integer(1)) => {
                        (None, parts.get(1).map(read_markers).unwrap_or_default())
                    }
                    other => (Some(resp::text(other).unwrap_or("G ?").to_string()), Vec::new()),
                };
                self.notices.push(Notice::Claimed { client, nick, held_by, serial, markers });
            }
            Expect::Who { asker, room } => {
                let nicks = self.elsewhere(&frame, ':').map(|(_, nick)| Rc::from(nick)).collect();
                self.notices.push(Notice::Who { asker, room, nicks });
            }
            Expect::Holders { asker, .. } => {
                let Frame::Array(found) = &frame else {
                    return Err(io::Error::other("a holders question answered with something else"));
                };
                let held = found
                    .iter()
                    .filter_map(resp::text)
                    .filter_map(|value| value.get(2..).filter(|nick| !nick.is_empty()).map(Rc::from))
                    .collect();
                self.notices.push(Notice::Holders { asker, held });
            }
            Expect::Rooms { asker } => {
                let rooms = rooms_elsewhere(self.elsewhere(&frame, ' '));
                self.notices.push(Notice::Rooms { asker, rooms });
            }
            Expect::Reached { asker, nick, direct } => {
                let Frame::Array(parts) = &frame else {
                    return Err(io::Error::other("a direct message answered with something else"));
                };
                let reached = parts.first().and_then(resp::integer).unwrap_or(0).max(0) as usize;
                let held_as = parts.get(1).and_then(resp::text).and_then(|value| {
                    let nick = value.get(2..).filter(|n| !n.is_empty())?;
                    Some((Rc::from(nick), value.starts_with('S')))
                });
                self.notices.push(Notice::Reached { asker, nick, reached, held_as, direct });
            }
            Expect::Bans => {
                // Handed over a share a turn (see `load_bans`): however many Redis holds, the
                // other clients wait for no more.
                if !self.bans.page(frame) {
                    return Err(io::Error::other("a page of bans answered with something else"));
                }
            }
        }
        Ok(())
    }

    /// Asks for the page of bans at `cursor` (`0`: the first).
    pub(super) fn ask_bans(&mut self, cursor: &[u8]) -> io::Result<()> {
        self.bans.asked();
        let count = bans::BANS_PER_PAGE.to_string();
        self.command(Expect::Bans, &[b"HSCAN", presence::BANS.as_bytes(), cursor, b"COUNT", count.as_bytes()])
    }

    /// The bans read at connect, a turn's share of them at a time, to the chat; the next page
    /// asked for once less than a page is left.
    pub(super) fn load_bans(&mut self) -> io::Result<()> {
        match self.bans.hand_over(&mut self.notices) {
            Some(cursor) => self.ask_bans(&cursor),
            None => Ok(()),
        }
    }

    /// The (field, value) pairs of a presence hash whose field names another process than this
    /// one (`PID` then `separator`).
    fn elsewhere<'a>(
        &'a self,
        frame: &'a Frame,
        separator: char,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        pairs(frame)
            .filter(move |(field, _)| field.split_once(separator).is_some_and(|(pid, _)| pid != self.pid))
    }

    /// A push on the subscription link: a confirmation or a published message.
    pub(super) fn on_push(&mut self, frame: Frame) -> io::Result<()> {
        let parts = match &frame {
            Frame::Array(parts) => parts,
            // AUTH's answer.
            Frame::SimpleString(_) => return Ok(()),
            Frame::Error(e) => {
                return Err(io::Error::other(format!("Redis refused a subscription command: {e}")))
            }
            _ => return Err(io::Error::other("the subscription link sent something other than a push")),
        };
        let kind = parts.first().and_then(resp::text).unwrap_or("");
        let (channel, payload) = (parts.get(1).and_then(resp::bytes), parts.get(2).and_then(resp::bytes));
        if let (true, Some(channel), Some(payload)) = (kind == "message", channel, payload) {
            if self.on_process_message(channel, payload) {
                return Ok(());
            }
        }
        let Some(room) = channel.and_then(|c| room::room_of_channel(self.url.db, c)) else { return Ok(()) };
        let room: Rc<str> = Rc::from(room);
        match kind {
            "ssubscribe" | "subscribe" => {
                debug!("Redis: subscribed to room {room:?}");
                let Some(followed) = self.followed.get_mut(&room) else { return Ok(()) };
                if followed.subscription == Subscription::Sent {
                    followed.subscription = Subscription::Live;
                    let display = followed.display.clone();
                    // Subscribed first, loaded second: a message published in between is in
                    // both, and the chat drops the copy by its sequence number.
                    self.queue_load(room, display)?;
                }
            }
            "smessage" | "message" => {
                if self.followed.get(&room).is_none_or(|f| f.subscription != Subscription::Live) {
                    return Ok(());
                }
                let mut heard = std::mem::take(&mut self.heard);
                if !payload.is_some_and(|p| room::parse_payload(&room, p, &mut heard)) {
                    warn!("Redis: a payload on the channel of room {room:?} was unreadable, in part or whole; what could not be read was ignored");
                }
                for (mut notice, origin) in heard.drain(..) {
                    let own = self.came_back(&origin);
                    if let Notice::Event { origin, .. } | Notice::Message { origin, .. } = &mut notice {
                        *origin = own;
                    }
                    self.notices.push(notice);
                }
                self.heard = heard;
            }
            _ => {}
        }
        Ok(())
    }

    /// A message on this process's own channel or the bans channel; false if it is neither.
    fn on_process_message(&mut self, channel: &Bytes, payload: &Bytes) -> bool {
        let db = self.url.db;
        if channel == presence::bans_channel(db).as_bytes() {
            let notice = match payload.strip_prefix(b"ban ") {
                Some(json) => presence::parse_ban(json).map(|(key, ban)| Notice::Banned { key, ban }),
                None => presence::parse_unban(payload).map(|key| Notice::Unbanned { key }),
            };
            if let Some(Notice::Banned { key, .. } | Notice::Unbanned { key }) = &notice {
                self.bans.heard(key);
            }
            self.notices.extend(notice);
            return true;
        }
        if channel != presence::process_channel(db, &self.pid).as_bytes() {
            return false;
        }
        if let Some(notice) = parse_direct(payload) {
            self.notices.push(notice);
        }
        true
    }
}

/// A user's read markers (`HGETALL` of its read key) as (room key, id).
fn read_markers(flat: &Frame) -> Vec<(String, String)> {
    let Frame::Array(flat) = flat else { return Vec::new() };
    let pair = |pair: &[Frame]| {
        Some((resp::text(pair.first()?)?.to_string(), resp::text(pair.get(1)?)?.to_string()))
    };
    flat.chunks(2).filter_map(pair).collect()
}

/// `KIND CLIENT NICK\nBODY` from another process's direct script, as the notice it means.
pub(crate) fn parse_direct(payload: &[u8]) -> Option<Notice> {
    let mut parts = payload.splitn(3, |&b| b == b' ');
    let (kind, client, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let client = std::str::from_utf8(client).ok()?.parse().ok()?;
    let rest = String::from_utf8_lossy(rest);
    let (nick, body) = rest.split_once('\n')?;
    let direct = match kind {
        // A member's private message, or an application's.
        b"p" | b"a" => {
            let (from, rest) = body.split_once('\n')?;
            let (ts, text) = rest.split_once('\n')?;
            let (from, ts, api) = (Rc::from(from), ts.parse().ok()?, kind == b"a");
            Direct::Private { from, text: text.to_string(), ts, api }
        }
        b"k" => Direct::Kick(body.to_string()),
        b"r" => {
            let mut parts = body.splitn(3, '\n');
            let (room_key, room, id) = (parts.next()?, parts.next()?, parts.next()?);
            Direct::Read { room_key: Rc::from(room_key), room: Rc::from(room), id: id.to_string() }
        }
        b"n" => {
            let mut parts = body.splitn(5, '\n');
            let (room_key, room, id, from) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let text = parts.next()?.to_string();
            let (room_key, room, from) = (Rc::from(room_key), Rc::from(room), Rc::from(from));
            Direct::Mention { room_key, room, id: id.to_string(), from, text }
        }
        b"b" => {
            let (json, closing) = body.split_once('\n')?;
            let (_, ban) = presence::parse_ban(json.as_bytes())?;
            Direct::Ban { closing: closing.to_string(), ban }
        }
        _ => return None,
    };
    Some(Notice::Direct { client, nick: Rc::from(nick), direct })
}

/// `PID ROOM` -> `COUNT DISPLAY` pairs as (key, display, members), summed over processes.
pub(crate) fn rooms_elsewhere<F: AsRef<str>, V: AsRef<str>>(
    entries: impl Iterator<Item = (F, V)>,
) -> Vec<(Rc<str>, Rc<str>, usize)> {
    let mut rooms: HashMap<Rc<str>, (Rc<str>, usize)> = HashMap::new();
    for (field, value) in entries {
        let (field, value) = (field.as_ref(), value.as_ref());
        let (Some((_, key)), Some((count, display))) = (field.split_once(' '), value.split_once(' ')) else {
            continue;
        };
        let entry = rooms.entry(Rc::from(key)).or_insert_with(|| (Rc::from(display), 0));
        entry.1 = entry.1.saturating_add(count.parse::<usize>().unwrap_or(0));
    }
    rooms.into_iter().map(|(key, (display, count))| (key, display, count)).collect()
}

/// A flat array of field, value (HGETALL, the live-entries script) as pairs of text.
fn pairs(frame: &Frame) -> impl Iterator<Item = (&str, &str)> {
    let items: &[Frame] = match frame {
        Frame::Array(items) => items,
        _ => &[],
    };
    items.chunks_exact(2).filter_map(|pair| Some((resp::text(&pair[0])?, resp::text(&pair[1])?)))
}

/// `{epoch, seq, display, [[id, [field, value]], ...]}` from the load script, the entries newest
/// first; the messages come back oldest first.
fn parse_loaded(room: Rc<str>, display: Rc<str>, frame: &Frame) -> Option<Notice> {
    let Frame::Array(parts) = frame else { return None };
    let epoch = Rc::from(resp::text(parts.first()?)?);
    let top = resp::integer(parts.get(1)?)?.max(0) as u64;
    let display = parts.get(2).and_then(resp::text).map_or(display, Rc::from);
    let Frame::Array(entries) = parts.get(3)? else { return None };
    let mut messages: Vec<Stored> = Vec::with_capacity(entries.len());
    for entry in entries {
        let Frame::Array(entry) = entry else { return None };
        let seq = resp::text(entry.first()?)?.split('-').next()?.parse().ok()?;
        let Frame::Array(fields) = entry.get(1)? else { return None };
        messages.push(room::stored(seq, resp::bytes(fields.get(1)?)?)?);
    }
    messages.reverse();
    Some(Notice::Loaded { room, display, epoch, top, messages: Some(messages) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::history::Kind;

    #[test]
    fn a_granted_claim_reads_back_the_user_s_markers() {
        let bulk = |s: &str| Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()));
        let flat = Frame::Array(vec![bulk("lobby"), bulk("e1:4"), bulk("dev"), bulk("e2:9")]);
        let markers = read_markers(&flat);
        assert_eq!(
            markers,
            [("lobby".to_string(), "e1:4".to_string()), ("dev".to_string(), "e2:9".to_string())]
        );
        assert!(read_markers(&Frame::Null).is_empty());
    }

    #[test]
    fn a_loaded_history_is_read_back() {
        let bulk = |s: &str| Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()));
        let entry = |seq: u64, from: &str| {
            let said = Stored {
                author: 0,
                edited: false,
                seq: 0,
                ts: 5,
                from: Rc::from(from),
                text: "hi".into(),
                kind: Kind::Line,
                mentions: Box::new([]),
            };
            Frame::Array(vec![
                bulk(&format!("{seq}-1")),
                Frame::Array(vec![bulk("m"), bulk(&room::say_body(&said))]),
            ])
        };
        let frame = Frame::Array(vec![
            bulk("ep0ch"),
            bulk("9"),
            bulk("Lobby"),
            // Newest first, as XREVRANGE gives them.
            Frame::Array(vec![entry(9, "b"), entry(8, "a")]),
        ]);
        let Some(Notice::Loaded { epoch, top, display, messages: Some(messages), .. }) =
            parse_loaded(Rc::from("lobby"), Rc::from("lobby"), &frame)
        else {
            panic!()
        };
        assert_eq!((&*epoch, top, &*display), ("ep0ch", 9, "Lobby"));
        assert_eq!(messages.iter().map(|m| (m.seq, &*m.from)).collect::<Vec<_>>(), [(8, "a"), (9, "b")]);
    }

    #[test]
    fn a_direct_message_reads_back_with_its_newlines() {
        let notice = parse_direct(b"p 7 Ann\nbob\n123\nline one\nline two").unwrap();
        let direct =
            Direct::Private { from: Rc::from("bob"), text: "line one\nline two".into(), ts: 123, api: false };
        assert_eq!(notice, Notice::Direct { client: 7, nick: Rc::from("Ann"), direct });
        assert_eq!(parse_direct(b"p x Ann\nbob"), None, "a client that is not a number");
    }
}
