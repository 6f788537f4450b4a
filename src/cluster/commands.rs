//! The chat's requests as Redis commands: each request becomes one or more commands queued on
//! the command link (written at the end of the turn), with what each reply will answer
//! ([`Expect`]) kept in order, since Redis answers a connection's commands in order.

use std::io;
use std::rc::Rc;

use super::batch::{Batch, Said};
use super::broker::RedisBroker;
use super::expect::{Expect, Script, Scripts};
use super::followed::{Followed, Subscription};
use super::{presence, room};
use crate::broker::{Asker, Direct, Origin, Request};
use crate::chat::history::new_epoch;
use crate::chat::names::fold;
use crate::chat::{ClientId, Stored};

impl RedisBroker {
    /// Queues the commands for one request. A room message joins its room's batch; anything
    /// else first queues the open batches, so that commands leave in the order asked.
    pub(super) fn send(&mut self, request: Request) -> io::Result<()> {
        if !matches!(request, Request::Say { .. }) {
            self.queue_batches()?;
        }
        match request {
            Request::Follow { room, display, .. } => {
                let entry = self
                    .followed
                    .entry(room)
                    .or_insert(Followed { display: display.clone(), subscription: Subscription::Wanted });
                entry.display = display;
                Ok(())
            }
            Request::Reload { room, display } => match self.followed.get(&room) {
                Some(f) if f.subscription == Subscription::Live => self.queue_load(room, display),
                // Loaded anyway once the subscription is confirmed.
                _ => Ok(()),
            },
            Request::Unfollow { room } => {
                self.followed.remove(&room);
                self.unfollowed.push(room);
                Ok(())
            }
            Request::Say { room, display, message, origin } => self.say(room, display, message, origin),
            Request::Announce { room, event, origin } => {
                let Some(json) = event.json() else { return Ok(()) };
                if let Some(client) = origin.filter(|_| self.followed.contains_key(&room)) {
                    self.flight.unechoed.insert(client, (room.clone(), event));
                }
                self.publish(&room, &room::event_payload(&self.origin(origin), &json), origin)
            }
            Request::Binary { room, from, data, origin } => {
                if let Some(json) = from.json() {
                    self.publish(&room, &room::event_payload(&self.origin(None), &json), None)?;
                }
                self.publish(&room, &room::binary_payload(&self.origin(Some(origin)), &data), Some(origin))
            }
            Request::Claim { client, nick: None, serial, .. } => {
                self.command(Expect::GuestNumber { client, serial }, &["INCR", presence::GUESTS])
            }
            Request::Claim { client, nick: Some(nick), signed, serial } => {
                self.claim(client, nick, signed, serial)
            }
            Request::Release { client, nick } => {
                let (key, holder) = (presence::nick_key(&fold(&nick)), self.holder(client));
                self.command(Expect::Nothing, &["HDEL", &key, &holder])
            }
            Request::Seat { client, room, nick } => {
                let (key, holder) = (presence::who_key(&room), self.holder(client));
                self.command(Expect::Nothing, &["HSET", &key, &holder, &nick])
            }
            Request::Unseat { client, room } => {
                let (key, holder) = (presence::who_key(&room), self.holder(client));
                self.command(Expect::Nothing, &["HDEL", &key, &holder])
            }
            Request::Count { room, display, count } => {
                let field = format!("{} {room}", self.pid);
                match count {
                    0 => self.command(Expect::Nothing, &["HDEL", presence::COUNTS, &field]),
                    _ => self.command(
                        Expect::Nothing,
                        &["HSET", presence::COUNTS, &field, &format!("{count} {display}")],
                    ),
                }
            }
            Request::Who { asker, room } => {
                let key = presence::who_key(&room);
                self.pending.push_back(Expect::Who { asker, room });
                self.eval(|s| &s.live, &[presence::PROCS, &key], &[])
            }
            Request::Rooms { asker } => {
                self.pending.push_back(Expect::Rooms { asker });
                self.eval(|s| &s.live, &[presence::PROCS, presence::COUNTS], &[])
            }
            Request::Direct { asker, nick, direct } => self.direct(asker, nick, direct),
            Request::History { asker, room, wanted } => self.history(asker, room, wanted),
            Request::MarkRead { user, room, id } => {
                let key = presence::read_key(&user);
                self.command(Expect::Nothing, &["HSET", &key, &room, &id])?;
                self.command(Expect::Nothing, &["EXPIRE", &key, &presence::READ_TTL_SECS.to_string()])
            }
            Request::Holders { asker, nicks } => {
                let keys: Vec<String> = nicks.iter().map(|nick| presence::nick_key(&fold(nick))).collect();
                let mut all = vec![presence::PROCS];
                all.extend(keys.iter().map(String::as_str));
                self.pending.push_back(Expect::Holders { asker, nicks });
                self.eval(|s| &s.holders, &all, &[])
            }
            Request::Ban { key, ban } => {
                let json = presence::ban_json(&key, &ban);
                let channel = presence::bans_channel(self.url.db);
                self.command(Expect::Nothing, &["HSET", presence::BANS, &key.to_store(), &json])?;
                self.command(Expect::Nothing, &["PUBLISH", &channel, &format!("ban {json}")])
            }
            Request::Unban { key } => {
                let channel = presence::bans_channel(self.url.db);
                self.command(Expect::Nothing, &["HDEL", presence::BANS, &key.to_store()])?;
                self.command(Expect::Nothing, &["PUBLISH", &channel, &presence::unban_payload(&key)])
            }
        }
    }

    /// This turn's unfollowed rooms in one UNSUBSCRIBE, its newly followed ones in one SUBSCRIBE.
    pub(super) fn queue_subscriptions(&mut self) -> io::Result<()> {
        let (subscribe, unsubscribe) =
            if self.sharded { ("SSUBSCRIBE", "SUNSUBSCRIBE") } else { ("SUBSCRIBE", "UNSUBSCRIBE") };
        let db = self.url.db;
        let mut gone = vec![unsubscribe.to_string()];
        for room in std::mem::take(&mut self.unfollowed) {
            if !self.followed.contains_key(&room) {
                gone.push(room::channel(db, &room));
            }
        }
        if gone.len() > 1 {
            self.sub.queue(&gone)?;
        }
        let mut wanted = vec![subscribe.to_string()];
        for (room, followed) in &mut self.followed {
            if followed.subscription == Subscription::Wanted {
                followed.subscription = Subscription::Sent;
                wanted.push(room::channel(db, room));
            }
        }
        if wanted.len() > 1 {
            // In one order whatever the hash map's: the same run subscribes the same way.
            wanted[1..].sort_unstable();
            self.sub.queue(&wanted)?;
        }
        Ok(())
    }

    /// A room message, to be numbered, kept and published by the say script with the others
    /// this turn says in the room (`batch.rs`).
    fn say(&mut self, room: Rc<str>, display: Rc<str>, message: Stored, origin: Origin) -> io::Result<()> {
        // A member's message holds its input until it is back; an application's holds nothing.
        let member = match origin {
            Origin::Member(client) => Some(client),
            Origin::Api(_) => None,
        };
        let (body, tag) = (room::say_body(&message), self.origin(member));
        // A delete takes its message's text out of the log too.
        let deleted = match message.kind {
            crate::chat::history::Kind::Delete { target } => format!("{target}-1"),
            _ => String::new(),
        };
        if let Some(client) = member.filter(|_| self.followed.contains_key(&room)) {
            self.sent_by(client);
        }
        // Kept until Redis answers: if queueing or the link fails first, `fail` finds it and
        // says it again here (see `Notice::Unsent`), rather than losing it.
        let said = Said { message, origin, body, tag, deleted };
        match self.batches.add(room, display, said) {
            Some(full) => self.queue_batch(full),
            None => Ok(()),
        }
    }

    /// Queues every open batch.
    pub(super) fn queue_batches(&mut self) -> io::Result<()> {
        let batches = self.batches.take();
        self.queue_these(batches)
    }

    /// Queues the open batches that may not linger any longer (`batch.rs`).
    pub(super) fn queue_due_batches(&mut self) -> io::Result<()> {
        let batches = self.batches.take_due(self.now);
        self.queue_these(batches)
    }

    fn queue_these(&mut self, batches: Vec<Batch>) -> io::Result<()> {
        let mut queued = Ok(());
        for batch in batches {
            // Each is expected even past a failure, for `fail` to find (see `say`).
            let result = self.queue_batch(batch);
            queued = queued.and(result);
        }
        queued
    }

    /// One call of the say script for a batch of a room's messages.
    fn queue_batch(&mut self, batch: Batch) -> io::Result<()> {
        let room = &batch.room;
        self.batches.called(&batch, self.now);
        let (meta, log, channel) =
            (room::meta_key(room), room::log_key(room), room::channel(self.url.db, room));
        let (epoch, limit) = (new_epoch(), self.history.to_string());
        let renew = if self.renewals.due(room, self.now) { "1" } else { "0" };
        let sharded = if self.sharded { "1" } else { "0" };
        let mut args: Vec<&str> = Vec::with_capacity(room::SAY_FIXED_ARGS + 3 * batch.said.len());
        args.extend([&*channel, &*epoch, &*batch.display, &*limit, renew, sharded]);
        for said in &batch.said {
            args.extend([&*said.tag, &said.body, &said.deleted]);
        }
        let queued = self.eval(|s| &s.say, &[&meta, &log], &args);
        // Expected even if queueing failed the link: `fail` then finds it (see `say`).
        self.pending.push_back(Expect::Said { room: batch.room.clone(), said: batch.messages() });
        queued
    }

    /// Claims `nick` for `client`, unless a live holder on another process has it.
    pub(super) fn claim(
        &mut self,
        client: ClientId,
        nick: Rc<str>,
        signed: bool,
        serial: u64,
    ) -> io::Result<()> {
        let (key, holder, value) =
            (presence::nick_key(&fold(&nick)), self.holder(client), presence::nick_value(&nick, signed));
        // A signed-in user's read markers come back with the claim, before it joins a room.
        let read = presence::read_key(&fold(&nick));
        let keys: &[&str] = if signed { &[presence::PROCS, &key, &read] } else { &[presence::PROCS, &key] };
        self.pending.push_back(Expect::Claimed { client, nick, serial });
        self.eval(|s| &s.claim, keys, &[&holder, &value])
    }

    /// Something for `nick`'s holders on the other processes, through their own channels.
    fn direct(&mut self, asker: Asker, nick: Rc<str>, direct: Direct) -> io::Result<()> {
        let key = presence::nick_key(&fold(&nick));
        let prefix = presence::process_channel(self.url.db, "");
        let (kind, body) = match &direct {
            Direct::Private { from, text, ts, api } => {
                (if *api { "a" } else { "p" }, format!("{from}\n{ts}\n{text}"))
            }
            Direct::Kick(reason) => ("k", reason.clone()),
            // The JSON first: it has no raw newline, the moderator's reason may.
            Direct::Ban { closing, ban } => {
                let json = presence::ban_json(&crate::chat::BanKey::User(fold(&nick)), ban);
                ("b", format!("{json}\n{closing}"))
            }
            Direct::Read { room_key, room, id } => ("r", format!("{room_key}\n{room}\n{id}")),
            // The text last: the only part that may be long.
            Direct::Mention { room_key, room, id, from, text } => {
                ("n", format!("{room_key}\n{room}\n{id}\n{from}\n{text}"))
            }
        };
        // The nick leads the body: the receiving process checks its connection still holds it.
        let body = format!("{nick}\n{body}");
        let pid = self.pid.clone();
        self.pending.push_back(Expect::Reached { asker, nick, direct });
        self.eval(|s| &s.direct, &[presence::PROCS, &key], &[&prefix, kind, &body, &pid])
    }

    /// A room's history for an application, as Redis keeps it, without following the room.
    fn history(&mut self, asker: Asker, room: Rc<str>, wanted: usize) -> io::Result<()> {
        let limit = wanted.min(self.history).to_string();
        let (meta, log) = (room::meta_key(&room), room::log_key(&room));
        self.pending.push_back(Expect::History { asker, room, wanted });
        self.eval(|s| &s.history, &[&meta, &log], &[&limit])
    }

    pub(super) fn queue_load(&mut self, room: Rc<str>, display: Rc<str>) -> io::Result<()> {
        let (meta, log) = (room::meta_key(&room), room::log_key(&room));
        let (epoch, ttl) = (new_epoch(), room::ROOM_TTL_SECS.to_string());
        self.pending.push_back(Expect::Loaded { room, display: display.clone() });
        let limit = self.history.to_string();
        self.eval(|s| &s.load, &[&meta, &log], &[&epoch, &display, &ttl, &limit])
    }

    /// Queues EVALSHA of one of the scripts (loaded on connect) with these keys and arguments.
    pub(super) fn eval(
        &mut self,
        script: fn(&Scripts) -> &Script,
        keys: &[&str],
        args: &[&str],
    ) -> io::Result<()> {
        let count = keys.len().to_string();
        let mut command = vec!["EVALSHA", &script(&self.scripts).sha, &count];
        command.extend(keys);
        command.extend(args);
        self.cmd.queue(&command)
    }

    /// Publishes a payload that is not kept (an announcement, a binary message) on a room's
    /// channel; `origin`'s input waits until it is back.
    fn publish(&mut self, room: &str, payload: &[u8], origin: Option<ClientId>) -> io::Result<()> {
        let publish = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        let channel = room::channel(self.url.db, room);
        self.command(Expect::Nothing, &[publish.as_bytes(), channel.as_bytes(), payload])?;
        if let Some(origin) = origin.filter(|_| self.followed.contains_key(room)) {
            self.sent_by(origin);
        }
        Ok(())
    }

    fn origin(&self, client: Option<ClientId>) -> String {
        room::origin(&self.pid, client)
    }

    fn holder(&self, client: ClientId) -> String {
        presence::holder(&self.pid, client)
    }
}
