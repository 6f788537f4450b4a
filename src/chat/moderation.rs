//! What reaches one nick wherever it is held: `/msg`, and the moderators' `/kick` and `/ban`;
//! bans themselves (`/unban`, `/bans`, the address ban of a guest), and the rights a token gives.
//!
//! Each is done here at once for the nick's holders on this process, and asked of the broker
//! for the holders on other processes; the sender is answered when the broker has answered,
//! from both counts (so "no such nick" means no process has it).

use std::rc::Rc;
use std::time::Duration;

use super::api::{ApiAnswer, Ticket};
use super::command::cut;
use super::names::{fold, validate_nick, MAX_NAME_CHARS};
use super::{
    may_enter, notice, reply, Access, Asker, Ban, BanKey, Chat, ClientId, Direct, Effect, Event, Journal,
    MemberAsker, Request, LOBBY,
};
use crate::auth::Identity;
use crate::logline::quoted;

/// Who waits for the other processes to answer a `/msg`, `/kick` or `/ban` (or the API's
/// `send`, `kick` or `ban`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Reacher {
    Member(ClientId),
    Api(Ticket),
}

impl Reacher {
    fn of(asker: &Asker) -> Option<Self> {
        match asker {
            Asker::Member(member) => Some(Self::Member(member.client)),
            Asker::Api(ticket) => Some(Self::Api(*ticket)),
            Asker::Nobody => None,
        }
    }
}

/// What a `/msg`, `/kick` or `/ban` did on this process, kept until the others answer.
pub(super) struct ReachedHere {
    /// Connections here holding the nick.
    holders: usize,
    /// The nick as held here, and whether its holder signed in.
    held_as: Option<(Rc<str>, bool)>,
}

impl Chat {
    /// Asks the broker to reach `nick` on the other processes with `direct`, after `holders`
    /// here were reached; `asker` waits for the answer (a member's input is held meanwhile).
    pub(super) fn reach(
        &mut self,
        asker: Asker,
        nick: &str,
        holders: Vec<ClientId>,
        held_as: Option<(Rc<str>, bool)>,
        direct: Direct,
    ) {
        if let Some(reacher) = Reacher::of(&asker) {
            self.waits.reached_here.insert(reacher, ReachedHere { holders: holders.len(), held_as });
        }
        let nick = Rc::from(nick);
        match asker {
            Asker::Member(MemberAsker { client, .. }) => {
                self.ask(client, |asker| Request::Direct { asker, nick, direct })
            }
            Asker::Api(_) | Asker::Nobody => self.requests.push(Request::Direct { asker, nick, direct }),
        }
    }

    /// A moderator's `/kick` (no duration) or `/ban`, if `client` is one.
    pub(super) fn moderate(
        &mut self,
        client: ClientId,
        nick: &str,
        duration: Option<Duration>,
        reason: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let verb = if duration.is_some() { "/ban" } else { "/kick" };
        if !self.is_admin(client) {
            return self.refuse(client, format!("only moderators can {verb}"), out);
        }
        // A name that cannot be a nick cannot be banned; kicking it finds nobody ("no such nick").
        if let (Some(_), Err(why)) = (duration, validate_nick(nick)) {
            return self.refuse(client, format!("cannot ban {}: {}", quoted(nick), why.0), out);
        }
        let Some(by) = self.member(client).map(|m| m.nick.clone()) else { return };
        let asker = Asker::Member(MemberAsker { client, nick: by.clone() });
        self.sanction(asker, &by, nick, duration, reason, now_ms, out);
    }

    /// `/kick` (no duration) and `/ban` by `by`, for `asker`: every connection of the user, on
    /// any process, is closed with 4000 and a reason its room hears; a ban also refuses the
    /// user (a guest: its address) until it ends. A user who is not connected can still be
    /// banned, by nick.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sanction(
        &mut self,
        asker: Asker,
        by: &str,
        nick: &str,
        duration: Option<Duration>,
        reason: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let target = self.find_nick(nick);
        let holders = target.map(|t| self.holders(t)).unwrap_or_default();
        let held_as = target.and_then(|t| self.member(t)).map(|m| (m.nick.clone(), m.signed));
        let name = held_as.as_ref().map_or(nick, |(held, _)| held);
        let (closing, ban) = sanction(by, name, duration, reason, now_ms);
        // Whoever is banned is closed once the ban is in force everywhere (back from the
        // broker), so that a ban seen is a ban met on any process.
        match (&ban, &held_as) {
            // A guest here: its address is banned.
            (Some(ban), Some((_, false))) => out.extend(holders.iter().map(|&client| Effect::BanAddress {
                client,
                ban: ban.clone(),
                closing: closing.clone(),
            })),
            (Some(_), _) => {
                let key = BanKey::User(fold(name));
                let waiting = holders.iter().map(|&client| (key.clone(), client, closing.clone()));
                self.waits.closing_after_ban.extend(waiting);
            }
            // Kicked here at once: the room hears them leave before the moderator hears back.
            (None, _) => {
                for &holder in &holders {
                    self.disconnect(holder, &closing, out);
                    out.push(Effect::Kick { client: holder, reason: closing.clone() });
                }
            }
        }
        if let (Some(ban), false) = (&ban, is_guest_nick(name)) {
            // A signed-in user, banned by name: the ban goes out before the other processes are
            // asked to close the user's connections there.
            self.record_ban(BanKey::User(fold(name)), ban.clone());
        }
        let direct = match ban {
            None => Direct::Kick(closing),
            Some(ban) => Direct::Ban { closing, ban },
        };
        self.reach(asker, nick, holders, held_as, direct);
    }

    /// The broker reached `nick` on `reached` connections elsewhere: the sender is told what
    /// came of it, here and there together.
    pub(super) fn reached(
        &mut self,
        asker: Asker,
        nick: &str,
        reached: usize,
        held_elsewhere: Option<(Rc<str>, bool)>,
        direct: Direct,
        out: &mut Vec<Effect>,
    ) {
        let here = Reacher::of(&asker).and_then(|reacher| self.waits.reached_here.remove(&reacher));
        let here = here.unwrap_or(ReachedHere { holders: 0, held_as: None });
        let reached = here.holders + reached;
        let held_as = here.held_as.or(held_elsewhere);
        let name =
            held_as.as_ref().map_or_else(|| cut(nick, MAX_NAME_CHARS).to_string(), |(n, _)| n.to_string());
        let asker = match asker {
            Asker::Api(ticket) => return self.api_reached(ticket, &name, reached, direct, out),
            Asker::Nobody => return,
            Asker::Member(asker) if self.answered(&asker) => asker,
            Asker::Member(_) => return,
        };
        let client = asker.client;
        match direct {
            _ if reached == 0 && !matches!(direct, Direct::Ban { .. }) => {
                out.push(reply(client, Self::no_such_nick(&name)))
            }
            Direct::Private { from, text, ts, .. } => {
                // The sender's own copy, unless it holds the nick itself (then it got one).
                if fold(&name) != fold(&asker.nick) {
                    let to = Rc::from(name.as_str());
                    out.push(reply(
                        client,
                        Event::Private { from, to, text, ts, outgoing: true, api: false }.into(),
                    ));
                }
            }
            Direct::Kick(_) => out.push(reply(client, notice(sanctioned(&name, false, false)))),
            // The ban itself is recorded already: a user's by name, a guest's by address where
            // it is connected.
            Direct::Ban { .. } => {
                let signed = held_as.as_ref().is_none_or(|(_, signed)| *signed);
                if reached == 0 && is_guest_nick(&name) {
                    return self.refuse(client, guest_not_connected(&name), out);
                }
                out.push(reply(client, notice(sanctioned(&name, true, signed))));
            }
            // Sent on for nobody (see `mentions.rs`, `read.rs`).
            Direct::Mention { .. } | Direct::Read { .. } => {}
        }
    }

    /// What the broker says of a nick reached for an application, with what was reached here.
    pub(super) fn api_reached(
        &self,
        ticket: Ticket,
        name: &str,
        reached: usize,
        direct: Direct,
        out: &mut Vec<Effect>,
    ) {
        let answer = match direct {
            Direct::Ban { ban, .. } if reached > 0 || !is_guest_nick(name) => {
                ApiAnswer::Banned { nick: name.to_string(), until_ms: ban.until_ms, kicked: reached }
            }
            Direct::Ban { .. } => ApiAnswer::NotFound(guest_not_connected(name)),
            _ if reached == 0 => ApiAnswer::NotFound(format!("no such nick: {name}")),
            Direct::Private { .. } | Direct::Kick(_) | Direct::Mention { .. } | Direct::Read { .. } => {
                ApiAnswer::Reached { reached }
            }
        };
        out.push(Effect::Answer { ticket, answer });
    }

    /// Another process sent one of this process's connections a private message, a kick or a
    /// ban, for `nick`: for whoever still holds it, not a connection that took the slot since.
    pub(super) fn direct_arrived(
        &mut self,
        client: ClientId,
        nick: &str,
        direct: Direct,
        out: &mut Vec<Effect>,
    ) {
        let Some(member) = self.member(client).filter(|m| fold(&m.nick) == fold(nick)) else { return };
        match direct {
            Direct::Private { from, text, ts, api } => {
                let event = Event::Private { from, to: member.nick.clone(), text, ts, outgoing: false, api };
                out.push(reply(client, event.into()));
            }
            Direct::Kick(reason) => out.push(Effect::Kick { client, reason }),
            Direct::Ban { closing, ban } if !member.signed => {
                out.push(Effect::BanAddress { client, ban, closing })
            }
            // A user: banned by name before this was sent (the ban arrived first).
            Direct::Ban { closing, .. } => out.push(Effect::Kick { client, reason: closing }),
            mention @ Direct::Mention { .. } => self.mention_arrived(client, &mention, out),
            read @ Direct::Read { .. } => self.read_arrived(client, &read, out),
        }
    }

    /// `/unban NICK`: its bans end, on every process.
    pub(super) fn unban(&mut self, client: ClientId, nick: &str, out: &mut Vec<Effect>) {
        if !self.is_admin(client) {
            return self.refuse(client, "only moderators can /unban".to_string(), out);
        }
        let text = match self.lift_bans(nick) {
            0 => format!("no ban for {}", cut(nick, MAX_NAME_CHARS)),
            _ => format!("{} may come back", cut(nick, MAX_NAME_CHARS)),
        };
        out.push(reply(client, notice(text)));
    }

    /// Ends `nick`'s bans (a user's, and its addresses' as a guest), on every process; how many.
    pub(super) fn lift_bans(&mut self, nick: &str) -> usize {
        let keys = self.bans.remove_nick(nick);
        self.requests.extend(keys.iter().map(|key| Request::Unban { key: key.clone() }));
        let count = keys.len();
        if let Some(journal) = &mut self.journal {
            journal.extend(keys.into_iter().map(|key| Journal::Unbanned { key }));
        }
        count
    }

    /// The bans in force, those that ended forgotten (and journaled).
    pub(super) fn bans_in_force(&mut self, now_ms: u64) -> Vec<(BanKey, Ban)> {
        let ended = self.bans.expire(now_ms);
        if let Some(journal) = &mut self.journal {
            journal.extend(ended.into_iter().map(|key| Journal::Unbanned { key }));
        }
        self.bans.active(now_ms).into_iter().map(|(key, ban)| (key.clone(), ban.clone())).collect()
    }

    /// `/bans`: the bans in force, with who set them and how long they have left.
    pub(super) fn list_bans(&mut self, client: ClientId, now_ms: u64, out: &mut Vec<Effect>) {
        if !self.is_admin(client) {
            return self.refuse(client, "only moderators can list /bans".to_string(), out);
        }
        let list: Vec<String> = self
            .bans_in_force(now_ms)
            .iter()
            .map(|(key, ban)| {
                let whom = match key {
                    BanKey::User(_) => ban.nick.clone(),
                    BanKey::Address(address) => format!("{} (guest, address {address})", ban.nick),
                };
                let left = ban.refusal(now_ms);
                let left = left.trim_start_matches("you are banned from this chat for ");
                format!("{whom}, by {}, {left}", ban.by)
            })
            .collect();
        let text = match list.is_empty() {
            true => "no bans".to_string(),
            false => format!("bans:\n{}", list.join("\n")),
        };
        out.push(reply(client, notice(text)));
    }

    fn record_ban(&mut self, key: BanKey, ban: Ban) {
        self.requests.push(Request::Ban { key: key.clone(), ban: ban.clone() });
        if let Some(journal) = &mut self.journal {
            journal.push(Journal::Banned { key: key.clone(), ban: ban.clone() });
        }
        self.bans.insert(key, ban);
    }

    /// Bans a guest's address (see [`Effect::BanAddress`]); `client` is closed with `closing`
    /// once the broker has the ban back (every process has it then, in one process at once).
    pub fn ban_address(&mut self, client: ClientId, address: std::net::IpAddr, ban: Ban, closing: String) {
        let key = BanKey::Address(address);
        self.waits.closing_after_ban.push((key.clone(), client, closing));
        self.record_ban(key, ban);
    }

    /// A ban is in force (from the broker, this process's own included): recorded, and whoever
    /// waited for it to be closed is closed.
    pub(super) fn banned(&mut self, key: BanKey, ban: Ban, out: &mut Vec<Effect>) {
        self.close_banned(Some(&key), out);
        self.bans.insert(key, ban);
    }

    /// Closes the connections that waited for the ban `key` to be in force (None: for any ban,
    /// the link being lost).
    pub(super) fn close_banned(&mut self, key: Option<&BanKey>, out: &mut Vec<Effect>) {
        if self.waits.closing_after_ban.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waits.closing_after_ban);
        for (banned, client, reason) in waiting {
            if key.is_none_or(|key| *key == banned) {
                out.push(Effect::Kick { client, reason });
            } else {
                self.waits.closing_after_ban.push((banned, client, reason));
            }
        }
    }

    /// Puts back a ban read from a store.
    pub fn restore_ban(&mut self, key: BanKey, ban: Ban) {
        self.bans.insert(key, ban);
    }

    /// A signed-in client renewed its session with a new token of the same user: what it may do
    /// is now what that token says (a room it may no longer enter, it leaves for the lobby).
    pub fn renew(&mut self, client: ClientId, identity: &Identity, out: &mut Vec<Effect>) {
        let access = Rc::new(Access::of(identity));
        let Some(member) = self.member_mut(client) else { return };
        member.access = Some(access.clone());
        member.expired = false;
        let room = member.room.clone();
        if !may_enter(Some(&access), &room) {
            self.join(client, LOBBY, out);
        }
    }

    /// A signed-in client's token expired. `exp` is how the application that signs tokens takes
    /// rights away, so until a new token comes (`/token`, see [`Self::renew`]) the client keeps
    /// nothing but the way back: it is told, its rights go (from a private room it leaves for
    /// the lobby), and every line but `/token` and `/quit` is refused
    /// ([`SESSION_EXPIRED`](super::SESSION_EXPIRED)). It still reads what others send it.
    pub fn expire(&mut self, client: ClientId, out: &mut Vec<Effect>) {
        if self.member(client).is_none() {
            // Still waiting for its nick: it is told now, and joins expired.
            if self.expire_pending_join(client) {
                out.push(reply(client, Event::Expired.into()));
            }
            return;
        }
        let Some(member) = self.member_mut(client) else { return };
        member.access = None;
        member.expired = true;
        let room = member.room.clone();
        out.push(reply(client, Event::Expired.into()));
        if !may_enter(None, &room) {
            self.join(client, LOBBY, out);
        }
    }
}

/// What a moderator `by` does to `nick` with `/kick` (no duration) or `/ban`: the reason its
/// connections are closed with, and the ban, if any.
fn sanction(
    by: &str,
    nick: &str,
    duration: Option<Duration>,
    reason: Option<&str>,
    now_ms: u64,
) -> (String, Option<Ban>) {
    let why = reason.map_or(String::new(), |r| format!(": {r}"));
    match duration {
        None => (format!("kicked by {by}{why}"), None),
        Some(duration) => {
            let ban = Ban {
                nick: nick.to_string(),
                until_ms: now_ms.saturating_add(duration.as_millis() as u64),
                reason: reason.unwrap_or_default().to_string(),
                by: by.to_string(),
            };
            (format!("banned by {by}{why}"), Some(ban))
        }
    }
}

/// What a moderator is told once `name` is kicked, or banned (a signed-in user by name, a
/// guest by address).
fn sanctioned(name: &str, banned: bool, signed: bool) -> String {
    match (banned, signed) {
        (false, _) => format!("{name} was kicked"),
        (true, true) => format!("{name} is banned"),
        (true, false) => format!("{name} is banned (a guest: by address)"),
    }
}

/// Whether `nick` is a guest nick (guests are banned by address, so only while connected).
pub(super) fn is_guest_nick(nick: &str) -> bool {
    fold(nick).starts_with(&fold("guest-"))
}

/// Why a guest who is not connected cannot be banned: its address is gone with it.
pub(super) fn guest_not_connected(name: &str) -> String {
    format!("{name} is not connected; a guest is banned by the address it connects from")
}
