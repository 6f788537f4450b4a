//! `/history ID [N]`: the messages of the client's room before message ID, a page at a time,
//! for a client scrolling back past what its join replayed. They come from the room's history
//! as kept here (with one process, all the room keeps; in a cluster, this process's copy of
//! what Redis keeps), oldest first, marked `older`, then a `history` summary saying where the
//! page starts and whether there is more.

use std::rc::Rc;

use super::history::MessageId;
use super::{error, reply, Chat, ClientId, Effect, Event, RoomMessage};

impl Chat {
    /// `/history`: up to `count` messages of `client`'s room before `before`.
    pub(super) fn earlier(&self, client: ClientId, before: &str, count: usize, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let Some(room) = self.rooms.get(&member.room) else { return };
        let page = MessageId::parse(before).and_then(|id| room.history.before(&id, count));
        let Some((messages, more)) = page else {
            let shown = super::command::cut(before, 64);
            return out.push(reply(client, error(format!("no message {shown} in {}", room.display))));
        };
        let epoch = room.history.epoch();
        if !messages.is_empty() {
            out.push(reply(client, Event::EarlierStart { room: room.display.clone() }.into()));
        }
        let first = messages.first().map(|m| MessageId { epoch: epoch.to_string(), seq: m.seq }.to_string());
        for message in &messages {
            let message = RoomMessage {
                room: room.display.clone(),
                epoch: epoch.clone(),
                message: Rc::clone(message),
                replay: false,
                older: true,
            };
            out.push(reply(client, Event::Message(message).into()));
        }
        let done = Event::History { room: room.display.clone(), count: messages.len(), more, first };
        out.push(reply(client, done.into()));
    }
}
