//! What a client does in the chat: a line of text (chat or a command, one method per command
//! behind a short dispatch), a binary message, leaving.
//!
//! `/who` and `/rooms` are answered from this process's members plus what the broker says of
//! the other processes; the asker waits for that answer (see `notices.rs`), so it arrives
//! after everything the asker sent before.

use std::rc::Rc;

use bytes::Bytes;

use super::command::{cut, parse_line, Command, Line};
use super::history::Kind;
use super::names::MAX_NAME_CHARS;
use super::{
    error, first_sorted, may_enter, notice, reply, Asker, Body, Chat, ClientId, Effect, Event, HelpFor,
    MemberAsker, Request, HELP, LOBBY, SESSION_EXPIRED,
};

impl Chat {
    /// A client sent a text message at `now_ms` (milliseconds since the Unix epoch): chat
    /// text or a command.
    pub fn text(&mut self, client: ClientId, text: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(expired) = self.member(client).map(|m| m.expired) else { return };
        let line = parse_line(text);
        if expired && !matches!(line, Line::Blank | Line::Command(Command::Token(_) | Command::Quit(_))) {
            // Nothing is relayed or done until a new token: the way back is all it keeps.
            out.push(reply(client, error(SESSION_EXPIRED)));
            return;
        }
        match line {
            Line::Say(said) => self.say_with_mentions(client, said, Kind::Line, now_ms),
            Line::Invalid(why) => out.push(reply(client, error(why))),
            Line::Blank => {}
            Line::Command(command) => self.command(client, command, now_ms, out),
        }
    }

    fn command(&mut self, client: ClientId, command: Command, now_ms: u64, out: &mut Vec<Effect>) {
        match command {
            Command::Me(action) => self.say_with_mentions(client, action, Kind::Action, now_ms),
            Command::Help => out.push(reply(client, notice(self.help_for(client)))),
            Command::Who => self.ask_who(client),
            Command::Rooms => self.ask(client, |asker| Request::Rooms { asker }),
            Command::Msg { to, text } => self.private(client, to, text, now_ms, out),
            Command::Kick { nick, reason } => self.moderate(client, nick, None, reason, now_ms, out),
            Command::Ban { nick, duration, reason } => {
                self.moderate(client, nick, Some(duration), reason, now_ms, out)
            }
            Command::Unban(nick) => self.unban(client, nick, out),
            Command::Bans => self.list_bans(client, now_ms, out),
            Command::Token(token) => {
                out.push(Effect::Renew { client, token: crate::auth::Token(token.to_string()) })
            }
            Command::Typing => self.typing(client, now_ms),
            Command::Read(id) => self.mark_read(client, id, out),
            Command::Edit { id, text } => self.edit(client, id, text, now_ms, out),
            Command::Delete(id) => self.delete(client, id, now_ms, out),
            Command::History { before, count } => self.earlier(client, before, count, out),
            Command::Nick(wanted) => self.change_nick(client, wanted, out),
            Command::Join(room) => self.join(client, room, out),
            Command::Quit(reason) => {
                let reason = reason.unwrap_or("").to_string();
                let departure =
                    if reason.is_empty() { "quit".to_string() } else { format!("quit: {reason}") };
                self.disconnect(client, &departure, out);
                out.push(Effect::Close { client, reason });
            }
        }
    }

    /// The `/help` lines that apply to `client`.
    fn help_for(&self, client: ClientId) -> String {
        let shown = |line: &&(HelpFor, &str)| match line.0 {
            HelpFor::Everyone => true,
            HelpFor::ChosenNicks => !self.limits.token_nicks,
            HelpFor::SignedIn => self.is_signed(client),
            HelpFor::Moderators => self.is_admin(client),
        };
        HELP.iter().filter(shown).map(|(_, line)| *line).collect::<Vec<_>>().join("\n")
    }

    /// Asks the broker a question on `client`'s behalf; `client` waits for the answer.
    pub(super) fn ask(&mut self, client: ClientId, question: impl FnOnce(Asker) -> Request) {
        let Some(nick) = self.member(client).map(|m| m.nick.clone()) else { return };
        self.requests.push(question(Asker::Member(MemberAsker { client, nick })));
        self.hold(client);
    }

    /// The asker of an answer, if it is still the member that asked (not whoever took its slot
    /// since); either way the client no longer waits for it.
    pub(super) fn answered(&mut self, asker: &MemberAsker) -> bool {
        // A departed asker's waits went with it: the slot's next connection waits for its own.
        let same = self.member(asker.client).is_some_and(|m| m.nick == asker.nick);
        if same {
            self.release(asker.client);
        }
        same
    }

    fn ask_who(&mut self, client: ClientId) {
        if let Some(room) = self.member(client).map(|m| m.room.clone()) {
            self.ask(client, |asker| Request::Who { asker, room });
        }
    }

    /// `/who`: this process's members of the room, and the other processes'.
    pub(super) fn who_answered(
        &mut self,
        asker: MemberAsker,
        room: &str,
        mut nicks: Vec<Rc<str>>,
        out: &mut Vec<Effect>,
    ) {
        if !self.answered(&asker) || self.member(asker.client).is_none_or(|m| *m.room != *room) {
            return;
        }
        let here = self.all_members(room);
        nicks.extend(here.iter().filter_map(|&c| self.member(c).map(|m| m.nick.clone())));
        let count = nicks.len();
        let shown = first_sorted(&mut nicks, |n| n).to_vec();
        out.push(reply(asker.client, Event::Who { room: self.display(room), count, nicks: shown }.into()));
    }

    /// `/rooms`: the rooms with members here or elsewhere (the lobby always), that the asker may
    /// see, with their member counts added up.
    pub(super) fn rooms_answered(
        &mut self,
        asker: MemberAsker,
        elsewhere: Vec<(Rc<str>, Rc<str>, usize)>,
        out: &mut Vec<Effect>,
    ) {
        if !self.answered(&asker) {
            return;
        }
        let access = self.member(asker.client).and_then(|m| m.access.clone());
        let mut visible: Vec<(Rc<str>, usize)> = self
            .rooms_everywhere(elsewhere)
            .into_iter()
            .filter(|(key, _)| may_enter(access.as_deref(), key))
            .map(|(_, room)| room)
            .collect();
        let count = visible.len();
        let shown = first_sorted(&mut visible, |(name, _)| name).to_vec();
        out.push(reply(asker.client, Event::Rooms { count, rooms: shown }.into()));
    }

    /// The rooms with members here or elsewhere (the lobby always), by key, with their display
    /// names and member counts added up; private ones included.
    pub(super) fn rooms_everywhere(
        &self,
        elsewhere: Vec<(Rc<str>, Rc<str>, usize)>,
    ) -> std::collections::HashMap<Rc<str>, (Rc<str>, usize)> {
        let mut rooms: std::collections::HashMap<Rc<str>, (Rc<str>, usize)> = self
            .rooms
            .iter()
            .filter(|(key, r)| r.len() > 0 || &***key == LOBBY)
            .map(|(key, r)| (key.clone(), (r.display.clone(), r.len())))
            .collect();
        for (key, display, count) in elsewhere {
            let entry = rooms.entry(key).or_insert((display, 0));
            entry.1 = entry.1.saturating_add(count);
        }
        rooms.retain(|key, (_, count)| *count > 0 || &**key == LOBBY);
        rooms
    }

    /// `/msg NICK TEXT`: see [`Chat::private_message`].
    fn private(&mut self, client: ClientId, to: &str, text: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(from) = self.member(client).map(|m| m.nick.clone()) else { return };
        let asker = Asker::Member(MemberAsker { client, nick: from.clone() });
        self.private_message(asker, from, to, text.to_string(), now_ms, false, out);
    }

    /// A private message (a member's `/msg`, or an application's, `api`): delivered to the
    /// nick's holders here at once, and to those on other processes through the broker;
    /// `asker` is answered when the broker has answered, from both counts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn private_message(
        &mut self,
        asker: Asker,
        from: Rc<str>,
        to: &str,
        text: String,
        ts: u64,
        api: bool,
        out: &mut Vec<Effect>,
    ) {
        let target = self.find_nick(to);
        let holders = target.map(|t| self.holders(t)).unwrap_or_default();
        let held_as = target.and_then(|t| self.member(t)).map(|m| (m.nick.clone(), m.signed));
        let to_nick = held_as.as_ref().map_or_else(|| Rc::from(to), |(nick, _)| nick.clone());
        for &holder in &holders {
            let (from, to, text) = (from.clone(), to_nick.clone(), text.clone());
            let event = Event::Private { from, to, text, ts, outgoing: false, api };
            out.push(reply(holder, event.into()));
        }
        let direct = super::Direct::Private { from, text, ts, api };
        self.reach(asker, to, holders, held_as, direct);
    }

    /// A client sent a binary message: relayed verbatim to its room, sender included, just
    /// after a line saying who sent it (a binary frame has no room for a sender).
    pub fn binary(&mut self, client: ClientId, data: Bytes, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        if member.expired {
            out.push(reply(client, error(SESSION_EXPIRED)));
            return;
        }
        let room = member.room.clone();
        let from =
            Event::BinaryFrom { room: self.display(&room), from: member.nick.clone(), bytes: data.len() };
        self.requests.push(Request::Binary { room, from, data, origin: client });
    }

    /// A client left (connection closed for any reason): drop it and tell its room.
    pub fn disconnect(&mut self, client: ClientId, reason: &str, out: &mut Vec<Effect>) {
        if let Some(room) = self.member(client).map(|m| m.room.clone()) {
            self.forget_waiter(client, &room);
        }
        self.forget_waits(client);
        self.forget_markers(client);
        let Some(member) = self.remove_member(client) else { return };
        self.unindex_nick(&member.nick, client);
        self.requests.push(Request::Release { client, nick: member.nick.clone() });
        self.unseat(client, &member.room);
        let display = self.display(&member.room);
        self.remove_from_room(&member.room, member.mode, member.seat);
        let reason = (!reason.is_empty()).then(|| reason.to_string());
        let event = Event::Left { room: display, nick: member.nick, reason, moved_to: None };
        self.announce(&member.room, None, event, out);
    }

    /// `client` was refused something with this text.
    pub(super) fn refuse(&self, client: ClientId, text: String, out: &mut Vec<Effect>) {
        out.push(reply(client, error(text)));
    }

    /// "no such nick: NICK", shortened as typed.
    pub(super) fn no_such_nick(name: &str) -> Body {
        error(format!("no such nick: {}", cut(name, MAX_NAME_CHARS)))
    }
}
