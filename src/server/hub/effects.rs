//! The hub's side of the chat: the chat's effects carried out (messages rendered and framed once
//! per mode and queued to every recipient, closes, kicks, session renewals), and the exchange
//! with the broker (requests to it, its notices back to the chat, and the connections held
//! while they wait on it).

use std::time::Instant;

use tungstenite::protocol::frame::coding::CloseCode;

use super::{Hub, KICKED};
use crate::auth::Token;
use crate::broker::{Broker, RECLAIMS_PER_TURN};
use crate::chat::api::{ApiAnswer, ApiCall, Ticket};
use crate::chat::{Audience, Body, ClientId, Effect, Event, Mode};
use crate::connection::Stream;
use crate::deflate::Outgoing;
use crate::frame::Opcode;
use crate::metrics::Kind;

/// Rounds of requests and answers between the chat and the broker in one call, at most: each
/// round is what the last answers asked for (a refused nick claims another), so a handful is
/// the most a request ever needs.
const EXCHANGES_PER_CALL: usize = 64;

impl<S: Stream> Hub<S> {
    // ----- chat effects -----

    /// Carries out the chat's effects: each message is rendered and framed once per mode that
    /// has recipients, and the same buffer queued for every recipient in that mode. The history
    /// changes behind them go to the write barrier, which commits them before any is written.
    /// What the chat asked of the broker goes to it, and what it answers at once (all of it, in
    /// one process) comes back to the chat within this call.
    pub(super) fn apply_effects(&mut self, now: Instant) {
        for _ in 0..EXCHANGES_PER_CALL {
            self.carry_out_effects(now);
            if !self.chat.has_requests() || !self.exchange_once(now) {
                return;
            }
        }
        // What is left waits for the next turn (the hub wakes at once while the chat has
        // requests): a chat and a broker that kept answering each other would otherwise hold
        // the loop for ever, as a request handed back as unsent once did.
        log::debug!("the chat and the broker still had more to say after {EXCHANGES_PER_CALL} rounds");
        self.carry_out_effects(now);
    }

    /// Carries out the effects the chat has produced so far, then cuts off the readers they
    /// left too far behind (whose leaving has effects of its own).
    fn carry_out_effects(&mut self, now: Instant) {
        while !self.effects.is_empty() {
            self.carry_out_queued(now);
            self.cut_off_slow_readers(now);
        }
    }

    /// Carries out the effects the chat has produced so far (and those they produce).
    fn carry_out_queued(&mut self, now: Instant) {
        self.chat.take_journal(self.fanout.barrier.pending_mut());
        while !self.effects.is_empty() {
            let mut effects = std::mem::take(&mut self.effects);
            for effect in effects.drain(..) {
                self.carry_out(effect, now);
            }
            // Keep the allocation for next time unless an effect produced new ones.
            if self.effects.is_empty() {
                self.effects = effects;
            }
            self.chat.take_journal(self.fanout.barrier.pending_mut());
        }
    }

    fn carry_out(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::Send { to, body } => self.deliver(&to, &body),
            Effect::Close { client, reason } => self.close(client, CloseCode::Normal, &reason, now),
            Effect::Refuse { client, reason } => self.close(client, CloseCode::Policy, &reason, now),
            Effect::Kick { client, reason } => self.close(client, CloseCode::from(KICKED), &reason, now),
            Effect::Renew { client, token } => self.renew_session(client, &token, now),
            Effect::BanAddress { client, ban, closing } => {
                if let Some(conn) = self.conns.get(client) {
                    self.chat.ban_address(client, conn.peer().ip(), ban, closing);
                }
            }
            Effect::Answer { ticket, answer } => self.api_answers.push((ticket, answer)),
            Effect::ReadEarlier { client, room, epoch, before, count } => {
                match self.fanout.barrier.older(&room, before, count) {
                    Ok((page, more)) => {
                        let page = page.into_iter().map(std::rc::Rc::new).collect();
                        self.chat.earlier_page(client, &room, &epoch, page, more, &mut self.effects);
                    }
                    Err(e) => {
                        log::error!("{e}");
                        let why = Event::error("earlier messages cannot be read now");
                        self.deliver(&Audience::Client(client), &Body::Event(why));
                    }
                }
            }
        }
    }

    // ----- the HTTP API -----

    /// An application's call (`crate::api`), for the chat; its answer comes out of
    /// [`take_api_answers`](Self::take_api_answers), this turn or a later one.
    pub fn api_call(&mut self, ticket: Ticket, call: ApiCall, now: Instant) {
        if call.writes() && self.broker.linked() == Some(false) {
            let refused = ApiAnswer::Unavailable(crate::chat::api::CLUSTER_DOWN.to_string());
            return self.api_answers.push((ticket, refused));
        }
        let now_ms = self.wall_ms(now);
        self.chat.api(ticket, call, now_ms, &mut self.effects);
        self.apply_effects(now);
    }

    /// Whether answers to API calls wait to be taken.
    pub fn has_api_answers(&self) -> bool {
        !self.api_answers.is_empty()
    }

    /// The answers to API calls that came since the last call.
    pub fn take_api_answers(&mut self, into: &mut Vec<(Ticket, ApiAnswer)>) {
        into.append(&mut self.api_answers);
    }

    /// A signed-in client's token expired: the chat takes its rights until a new one comes.
    pub(super) fn expire_session(&mut self, client: usize, now: Instant) {
        self.chat.expire(client, &mut self.effects);
        self.apply_effects(now);
    }

    /// `/token JWT`: a signed-in client's new token, for the same user, extends its session.
    pub(super) fn renew_session(&mut self, client: usize, token: &Token, now: Instant) {
        let (now_unix, signed) = (crate::auth::unix_now(), self.chat.is_signed(client));
        let answer = match (&self.settings.auth, self.chat.nick(client)) {
            (Some(auth), Some(nick)) => match auth.renewal(token, signed.then_some(nick), now_unix) {
                Ok(identity) => {
                    if let Some(conn) = self.conns.get_mut(client) {
                        conn.extend_session(identity.expires_at(now, now_unix));
                    }
                    self.rearm(client, now);
                    // Its rights are the new token's (rooms, role).
                    self.chat.renew(client, &identity, &mut self.effects);
                    Event::notice(format!("session renewed for {}s", identity.exp - now_unix))
                }
                Err(refusal) => Event::error(refusal.0),
            },
            _ => Event::error(crate::auth::Refusal::NO_KEYS.0),
        };
        self.deliver(&Audience::Client(client), &Body::Event(answer));
    }

    pub(super) fn deliver(&mut self, to: &Audience, body: &Body) {
        let mut binary = None;
        let one = [match to {
            Audience::Client(client) => *client as u32,
            _ => 0,
        }];
        for mode in Mode::ALL {
            // Who receives, as at most two runs of one list (a room but one member: the runs
            // on either side of it).
            let (recipients, more): (&[u32], &[u32]) = match to {
                Audience::Client(client) if self.chat.mode(*client) == Some(mode) => (&one, &[]),
                Audience::Client(_) => continue,
                Audience::Room(room) => (self.chat.room_members(room, mode), &[]),
                Audience::RoomExcept(room, except) => {
                    let all = self.chat.room_members(room, mode);
                    match all.iter().position(|&c| c as ClientId == *except) {
                        Some(at) => (&all[..at], &all[at + 1..]),
                        None => (all, &[]),
                    }
                }
            };
            if recipients.is_empty() && more.is_empty() {
                continue;
            }
            let mut text = None;
            let (kind, message) = match body {
                Body::Event(event) => match event.render(mode) {
                    Some(rendered) => {
                        (Kind::Text, text.insert(Outgoing::new(Opcode::Text, rendered.as_bytes())))
                    }
                    None => continue,
                },
                // The same frames for both modes: framed (and compressed) once.
                Body::Binary(data) => {
                    (Kind::Binary, binary.get_or_insert_with(|| Outgoing::new(Opcode::Binary, data)))
                }
            };
            let mut delivered = self.fanout.queue_to_all(&mut self.conns, recipients, message);
            if !more.is_empty() {
                delivered += self.fanout.queue_to_all(&mut self.conns, more, message);
            }
            self.counters.deliveries[kind as usize] += delivered as u64;
        }
    }

    /// Disconnects the readers fan-out found over `--max-outbound`.
    pub(super) fn cut_off_slow_readers(&mut self, now: Instant) {
        let clock = self.clock(now);
        while let Some(key) = self.fanout.next_too_slow() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if let Some(why) = conn.cut_off_too_slow(clock, &self.settings) {
                self.counters.slow_readers_cut_off += 1;
                self.leave_chat(key, &why, now);
                self.after_activity(key, now);
            }
        }
    }

    pub(super) fn leave_chat(&mut self, key: ClientId, why: &str, now: Instant) {
        // A connection still waiting for its nick claim leaves too: its claim must not join
        // whoever gets its slot next.
        if self.chat.nick(key).is_some() || self.chat.is_waiting(key) {
            self.chat.disconnect(key, why, &mut self.effects);
            self.apply_effects(now);
        }
    }

    // ----- the broker -----

    pub fn broker(&self) -> &dyn Broker {
        self.broker.as_ref()
    }

    /// The broker, for the loop to hand it its sockets' events and its turns.
    pub fn broker_mut(&mut self) -> &mut dyn Broker {
        self.broker.as_mut()
    }

    /// The turn's exchange with the broker, in the loop's order: the broker's turn (links read
    /// again if their budget ran out, its timers), a relink's next share of members if the broker
    /// has room for it, its notices to the chat and the chat's requests to it, then one write
    /// (which may answer with notices of its own, a lost link say), until it has nothing new.
    pub fn broker_turn(&mut self, now: Instant) {
        self.broker.on_turn(now);
        if self.chat.is_reclaiming() && self.broker.has_spare_room() {
            self.chat.reclaim_some(RECLAIMS_PER_TURN);
        }
        loop {
            self.exchange_with_broker(now);
            self.broker.end_turn(now);
            if !self.exchange_with_broker(now) {
                return;
            }
        }
    }

    /// The broker's notices (from its sockets) to the chat, the chat's requests to the broker,
    /// until neither has more; then the connections that waited on it and no longer do are
    /// read again. True if the broker had anything to say.
    pub fn exchange_with_broker(&mut self, now: Instant) -> bool {
        let said = self.exchange_once(now);
        self.apply_effects(now);
        self.resume_held();
        said
    }

    /// Hands the chat's requests to the broker and the broker's notices to the chat, once.
    /// True if there were notices (whose effects are then waiting in `effects`).
    fn exchange_once(&mut self, now: Instant) -> bool {
        let mut requests = std::mem::take(&mut self.requests);
        self.chat.take_requests(&mut requests);
        for request in requests.drain(..) {
            self.broker.request(request);
        }
        self.requests = requests;
        let mut notices = std::mem::take(&mut self.notices);
        self.broker.take_notices(&mut notices);
        let any = !notices.is_empty();
        for notice in notices.drain(..) {
            self.chat.on_notice(notice, &mut self.effects);
            // Each notice's effects before the next notice: a room is resolved to its members
            // when its message is queued, and a member seated by a later notice (a claim granted)
            // must not receive what was said before it was welcomed. Slow readers are judged once
            // the batch is queued: a reader cut off between a binary message's line and its frame
            // would have its room hear it leave in between.
            self.carry_out_queued(now);
        }
        self.notices = notices;
        self.cut_off_slow_readers(now);
        any
    }

    /// Whether the chat has something for the broker that can go now: requests not yet taken,
    /// or a relink's next share while the broker has room for it.
    pub(super) fn has_broker_work(&self) -> bool {
        self.chat.has_requests() || (self.chat.is_reclaiming() && self.broker.has_spare_room())
    }

    /// Whether connection `key` must not be read now: it waits on the broker, or the broker is
    /// saturated.
    pub(super) fn waits_on_broker(&self, key: usize) -> bool {
        self.chat.is_waiting(key) || self.broker.in_flight(key) || self.broker.is_saturated()
    }

    /// Reads again, next turn, the held connections that no longer wait.
    fn resume_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        held.retain(|&key| {
            let waits = self.waits_on_broker(key);
            if !waits {
                self.unfinished_reads.push(key);
            }
            waits
        });
        self.held = held;
    }
}
