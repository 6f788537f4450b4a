//! `/edit ID TEXT` and `/delete ID`: a member changes or removes a message it sent (a
//! moderator may remove anyone's). Each is a room event with an id of its own in the room's
//! sequence, said through the broker like a message (so every process applies it in the
//! room's one order, and the history keeps it for clients resuming), and applied to the
//! history as it is kept (`History::keep`): a joiner sees the room as it stands.
//!
//! The message must still be in what the room keeps in memory (`--history`), an edit must
//! come within `--edit-window` of it, and only a chat line or an action can be changed.

use std::rc::Rc;

use super::history::{Kind, MessageId, Stored};
use super::names::fold;
use super::{error, reply, Chat, ClientId, Effect, Origin, Request};

impl Chat {
    /// `/edit ID TEXT`.
    pub(super) fn edit(
        &mut self,
        client: ClientId,
        id: &str,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let target = match self.own_message(client, id) {
            Ok(target) => target,
            Err(why) => return out.push(reply(client, error(why))),
        };
        if now_ms.saturating_sub(target.ts) > self.limits.edit_window_ms {
            let window = self.limits.edit_window_ms / 60_000;
            return out.push(reply(
                client,
                error(format!("too late to edit that message (after {window} minutes)")),
            ));
        }
        self.say_change(client, Kind::Edit { target: target.seq }, text, now_ms);
    }

    /// `/delete ID`.
    pub(super) fn delete(&mut self, client: ClientId, id: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let target = match self.own_message(client, id) {
            Ok(target) => target,
            Err(_) if self.is_admin(client) => match self.room_message_of(client, id) {
                Ok(target) if !target.kind.is_change() => target,
                Ok(_) | Err(_) => return out.push(reply(client, error(self.no_message(client, id)))),
            },
            Err(why) => return out.push(reply(client, error(why))),
        };
        if !self.signals.delete_allowed(client, now_ms) {
            return out.push(reply(client, error("one /delete a second: try again in a moment")));
        }
        self.say_change(client, Kind::Delete { target: target.seq }, "", now_ms);
    }

    /// Message `id` of `client`'s room, if the room keeps it. Not while the room's history is
    /// being loaded (a relink): the copy here may be of another epoch than the cluster's, and
    /// a change must name a message of the epoch it will be numbered in.
    fn room_message_of(&self, client: ClientId, id: &str) -> Result<Rc<Stored>, String> {
        let member = self.member(client).ok_or_else(String::new)?;
        let room = self.rooms.get(&member.room).ok_or_else(String::new)?;
        if matches!(room.sync, super::following::Sync::Loading { .. }) {
            return Err("the room is being loaded: try again in a moment".to_string());
        }
        MessageId::parse(id)
            .filter(|id| *id.epoch == **room.history.epoch())
            .and_then(|id| room.history.get(id.seq).cloned())
            .ok_or_else(|| self.no_message(client, id))
    }

    /// Message `id` of `client`'s room, if `client` sent it (a chat line or an action): by
    /// its nick and its author number (see `Stored::author`), so that a nick held by someone
    /// else before is not enough.
    fn own_message(&self, client: ClientId, id: &str) -> Result<Rc<Stored>, String> {
        let target = self.room_message_of(client, id)?;
        let Some(member) = self.member(client) else { return Err(String::new()) };
        let same_author = fold(&target.from) == fold(&member.nick) && target.author == member.author;
        match target.kind.is_members() && same_author {
            true => Ok(target),
            false => Err("that message is not yours".to_string()),
        }
    }

    fn no_message(&self, client: ClientId, id: &str) -> String {
        let room = self.member(client).map(|m| self.display(&m.room)).unwrap_or_default();
        format!("no message {} in {room}", super::command::cut(id, 64))
    }

    /// An edit or a delete, said through the broker like a message.
    fn say_change(&mut self, client: ClientId, kind: Kind, text: &str, now_ms: u64) {
        let Some(member) = self.member(client) else { return };
        let (room, from) = (member.room.clone(), member.nick.clone());
        let change = Stored {
            author: member.author,
            edited: false,
            seq: 0,
            ts: now_ms,
            from,
            text: text.into(),
            kind,
            mentions: Box::new([]),
        };
        let display = self.display(&room);
        self.requests.push(Request::Say { room, display, message: change, origin: Origin::Member(client) });
    }
}
