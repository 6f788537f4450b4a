//! Mentions: a message naming `@NICK` of a member carries the nicks it names (JSON mode's
//! `mentions`), and a named member who sits in another room is told (`mention`).
//!
//! Which names are members' is settled once, by the process the message is said on, before
//! it is said: the nicks held here at once; in a cluster, the others by asking the broker who
//! holds them (the sender's input waits, as for `/msg`). So every process delivers the same
//! `mentions`, and the history keeps them. A message without `@` costs nothing more.
//!
//! Once the message is numbered and back, that same process tells the named members who are
//! not in its room: those here at once, those elsewhere through the broker, like a `/msg`.

use std::rc::Rc;

use super::history::{Kind, MessageId, Stored};
use super::names::{fold, validate_nick};
use super::{reply, Asker, Chat, ClientId, Direct, Event, Origin, Request};

/// Most names one message mentions; more `@` words are plain text.
pub const MAX_MENTIONS: usize = 10;

/// A message waiting for the broker to say which of its `@` names are held.
pub(super) struct Pending {
    text: Box<str>,
    kind: Kind,
    ts: u64,
    /// The names found held here, as held.
    held: Vec<Rc<str>>,
}

/// The names `text` mentions with `@NICK`, as written, each once (by the nick rules), at most
/// [`MAX_MENTIONS`]. An `@` inside a word (`bob@example.com`) is not a mention, and the
/// punctuation a sentence puts after a name (`@alice,`) is not part of it.
pub fn named(text: &str) -> Vec<&str> {
    // Most messages name nobody: one byte scan, and nothing allocated.
    if !text.as_bytes().contains(&b'@') {
        return Vec::new();
    }
    let mut names: Vec<&str> = Vec::new();
    let mut folded: Vec<String> = Vec::new();
    let mut previous = ' ';
    for (at, c) in text.char_indices() {
        let starts = c == '@' && !previous.is_alphanumeric();
        previous = c;
        if !starts {
            continue;
        }
        let rest = &text[at + 1..];
        let word = rest.split(char::is_whitespace).next().unwrap_or("");
        let name = word.trim_end_matches(|c: char| ".,;:!?)'\"".contains(c));
        if name.is_empty() || validate_nick(name).is_err() {
            continue;
        }
        let key = fold(name);
        if !folded.contains(&key) {
            folded.push(key);
            names.push(name);
            if names.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    names
}

impl Chat {
    /// A room message from `client` with its mentions settled: at once when every name is
    /// held here (or there are no other processes to ask), else once the broker has said
    /// who holds the others (`client` waits meanwhile).
    pub(super) fn say_with_mentions(&mut self, client: ClientId, text: &str, kind: Kind, now_ms: u64) {
        let names = named(text);
        let (mut held, mut unknown) = (Vec::new(), Vec::new());
        for name in names {
            match self.find_nick(name).and_then(|c| self.member(c)) {
                Some(member) => held.push(member.nick.clone()),
                None => unknown.push(Rc::from(name)),
            }
        }
        if unknown.is_empty() || !self.is_linked() {
            return self.say_now(client, text, kind, now_ms, held);
        }
        self.waits.mentioning.insert(client, Pending { text: text.into(), kind, ts: now_ms, held });
        self.ask(client, |asker| Request::Holders { asker, nicks: unknown });
    }

    /// The broker said which names are held on other processes, as held: the waiting message
    /// is said with them.
    pub(super) fn holders_answered(&mut self, asker: Asker, held: Vec<Rc<str>>) {
        let Asker::Member(asker) = asker else { return };
        let pending = self.waits.mentioning.remove(&asker.client);
        if !self.answered(&asker) {
            return;
        }
        let Some(mut pending) = pending else { return };
        for nick in held {
            if !pending.held.iter().any(|h| fold(h) == fold(&nick)) {
                pending.held.push(nick);
            }
        }
        self.say_now(asker.client, &pending.text, pending.kind, pending.ts, pending.held);
    }

    /// Says a room message from `client`, mentioning `mentions`: published through the
    /// broker, numbered, kept and delivered when it comes back.
    fn say_now(&mut self, client: ClientId, text: &str, kind: Kind, ts: u64, mentions: Vec<Rc<str>>) {
        let Some(member) = self.member(client) else { return };
        let (room, from, author) = (member.room.clone(), member.nick.clone(), member.author);
        let mentions = mentions.into_boxed_slice();
        let message = Stored { author, edited: false, seq: 0, ts, from, text: text.into(), kind, mentions };
        let display = self.display(&room);
        self.requests.push(Request::Say { room, display, message, origin: Origin::Member(client) });
    }

    /// A message said here is numbered and kept: the members it mentions who are not in room
    /// `key` are told, here at once and elsewhere through the broker.
    pub(super) fn tell_mentioned(
        &mut self,
        key: &Rc<str>,
        epoch: &str,
        message: &Stored,
        out: &mut Vec<super::Effect>,
    ) {
        let room = self.display(key);
        let id = MessageId { epoch: epoch.to_string(), seq: message.seq }.to_string();
        for nick in message.mentions.iter() {
            let mention = Direct::Mention {
                room_key: key.clone(),
                room: room.clone(),
                id: id.clone(),
                from: message.from.clone(),
                text: message.text.to_string(),
            };
            if let Some(owner) = self.find_nick(nick) {
                for holder in self.holders(owner) {
                    self.mention_arrived(holder, &mention, out);
                }
            }
            self.requests.push(Request::Direct { asker: Asker::Nobody, nick: nick.clone(), direct: mention });
        }
    }

    /// `client` is mentioned by a message in another room (one in that room has it already).
    pub(super) fn mention_arrived(&self, client: ClientId, mention: &Direct, out: &mut Vec<super::Effect>) {
        let Direct::Mention { room_key, room, id, from, text } = mention else { return };
        // Not to one in the room (it has the message), nor to one who may not enter it (a
        // private room stays unseen).
        let Some(member) = self.member(client) else { return };
        if member.room == *room_key || !super::may_enter(member.access.as_deref(), room_key) {
            return;
        }
        let event =
            Event::Mention { room: room.clone(), id: id.clone(), from: from.clone(), text: text.clone() };
        out.push(reply(client, event.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_after_an_at_sign_each_once() {
        assert_eq!(named("hi @alice, and @Bob! @ALICE again"), ["alice", "Bob"]);
        assert_eq!(named("mail bob@example.com or @carol."), ["carol"]);
        assert_eq!(named("@ alone, @*star, @[x] and (@dave)"), ["dave"]);
        assert_eq!(named("no mentions here"), Vec::<&str>::new());
        let many: String = (0..20).map(|i| format!("@n{i} ")).collect();
        assert_eq!(named(&many).len(), MAX_MENTIONS);
        assert_eq!(named("@a1ice and @alice"), ["a1ice"], "confusables are one name");
    }
}
