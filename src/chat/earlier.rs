//! `/history ID [N]`: the messages of the client's room before message ID, a page at a time,
//! for a client scrolling back past what its join replayed, oldest first, marked `older`, then
//! a `history` summary saying where the page starts and whether there is more.
//!
//! Where they come from: with a store (`--data-dir`), the store, which keeps `--retain` per
//! room, far more than memory (the chat asks the event loop to read it:
//! [`Effect::ReadEarlier`]); otherwise the room's history as kept here (with one process, all
//! the room keeps; in a cluster, this process's copy of what Redis keeps).

use std::rc::Rc;

use super::history::{MessageId, Stored};
use super::{error, reply, Chat, ClientId, Effect, Event, RoomMessage};

impl Chat {
    /// `/history`: up to `count` messages of `client`'s room before `before`.
    pub(super) fn earlier(&self, client: ClientId, before: &str, count: usize, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let Some(room) = self.rooms.get(&member.room) else { return };
        let id = MessageId::parse(before);
        let page = id.as_ref().and_then(|id| room.history.before(id, count));
        let (Some(id), Some((messages, more))) = (id, page) else {
            let shown = super::command::cut(before, 64);
            return out.push(reply(client, error(format!("no message {shown} in {}", room.display))));
        };
        if self.journal.is_some() {
            // The store keeps more than memory, and everything older than an id a client has.
            let (room, epoch) = (member.room.clone(), room.history.epoch().clone());
            return out.push(Effect::ReadEarlier { client, room, epoch, before: id.seq, count });
        }
        let messages = messages.into_iter().cloned().collect();
        self.earlier_page(client, &member.room, room.history.epoch(), messages, more, out);
    }

    /// A page of `/history` for `client`, from room `key` of epoch `epoch`: the messages, then
    /// the summary.
    pub fn earlier_page(
        &self,
        client: ClientId,
        key: &str,
        epoch: &Rc<str>,
        messages: Vec<Rc<Stored>>,
        more: bool,
        out: &mut Vec<Effect>,
    ) {
        let display = self.display(key);
        if !messages.is_empty() {
            out.push(reply(client, Event::EarlierStart { room: display.clone() }.into()));
        }
        let first = messages.first().map(|m| MessageId { epoch: epoch.to_string(), seq: m.seq }.to_string());
        let count = messages.len();
        for message in messages {
            let message = RoomMessage {
                room: display.clone(),
                epoch: epoch.clone(),
                message,
                replay: false,
                older: true,
            };
            out.push(reply(client, Event::Message(message).into()));
        }
        out.push(reply(client, Event::History { room: display, count, more, first }.into()));
    }
}
