//! How a connection ends, and its deadlines: keep-alive pings and the idle timeout, the
//! handshake and close deadlines, server-initiated closes (including the slow-reader cut-off
//! and shutdown), protocol failures, and the finishing phase that sends a last reply.

use log::{debug, trace};
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;

use super::flags::{PING_SENT, TIMER_ARMED};
use super::{close_frame, Clock, Connection, Failure, Phase, Step, Stream, Tick, Why, TOKEN_GRACE};
use crate::frame::{self, Opcode};
use crate::metrics::Verdict;
use crate::remote_warn;
use crate::settings::Settings;

impl<S: Stream> Connection<S> {
    // ----- timers -----

    /// When this connection next needs attention, in milliseconds since the server started
    /// (see `clock.rs`): its handshake or close deadline, or its next keep-alive check.
    pub fn deadline(&self, clock: &Clock, settings: &Settings) -> Option<u64> {
        match &self.phase {
            Phase::Head { .. } | Phase::Finishing { .. } | Phase::Open { closing: true, .. } => {
                Some(clock.ms_of(self.deadline))
            }
            Phase::Open { closing: false, .. } => {
                let wait =
                    if self.flags.has(PING_SENT) { settings.idle_timeout } else { settings.ping_after };
                let keep_alive = clock.ms_of(self.last_heard.after(wait));
                let expiry = self.expiry.as_deref().and_then(|e| {
                    if e.told {
                        e.at.checked_add(TOKEN_GRACE)
                    } else {
                        Some(e.at)
                    }
                });
                Some(expiry.map_or(keep_alive, |expiry| clock.ms_of_instant(expiry).min(keep_alive)))
            }
            Phase::Gone => None,
        }
    }

    /// Notes a timer queued for `at` (see [`deadline`](Self::deadline)); false if an earlier
    /// one is already pending (the queue then needs no new entry).
    pub fn arm_timer(&mut self, at: u64) -> bool {
        let at = Tick::from_ms(at);
        if self.flags.has(TIMER_ARMED) && at.reached(self.timer_at) {
            return false;
        }
        self.timer_at = at;
        self.flags.set(TIMER_ARMED, true);
        true
    }

    /// Whether a timer entry popped from the queue is this connection's current one (entries
    /// left behind by an earlier deadline, or by a previous user of the slab key, are not;
    /// see `server/timers.rs` for one that matches by chance).
    pub fn take_timer(&mut self, at: u64) -> bool {
        if !self.has_timer(at) {
            return false;
        }
        self.flags.set(TIMER_ARMED, false);
        true
    }

    /// Whether the queue entry at `at` is this connection's pending timer.
    pub fn has_timer(&self, at: u64) -> bool {
        self.flags.has(TIMER_ARMED) && self.timer_at == Tick::from_ms(at)
    }

    /// A timer fired: drop a stalled handshake or close, ping a quiet client, close a silent one.
    pub fn on_timer(&mut self, clock: Clock, settings: &Settings) -> Step {
        let (idle, tick) = (settings.idle_timeout, clock.tick());
        match &mut self.phase {
            Phase::Head { .. } if tick.reached(self.deadline) => {
                remote_warn!(
                    "{}: handshake not completed within {:?}; dropping",
                    self.peer,
                    settings.handshake_timeout
                );
                self.verdict = Some(Verdict::HandshakeTimeout);
                Step::Gone("handshake timeout".into())
            }
            Phase::Finishing { .. } | Phase::Open { closing: true, .. } if tick.reached(self.deadline) => {
                debug!("{}: close not completed in time", self.peer);
                Step::Gone("close timeout".into())
            }
            // The expiry is judged in the milliseconds its timer was set in (`deadline`): judged
            // in instants, a timer set for the millisecond the expiry falls in could find it
            // not yet due, and set again for that same millisecond, forever.
            Phase::Open { closing: false, .. }
                if self.expiry.as_deref().is_some_and(|e| {
                    e.told
                        && e.at
                            .checked_add(TOKEN_GRACE)
                            .is_some_and(|end| clock.ms >= clock.ms_of_instant(end))
                }) =>
            {
                debug!("{}: token expired and not renewed; closing with 1008", self.peer);
                self.close(CloseCode::Policy, "token expired", clock, settings);
                Step::Left("token expired".into())
            }
            Phase::Open { closing: false, .. }
                if self
                    .expiry
                    .as_deref()
                    .is_some_and(|e| !e.told && clock.ms >= clock.ms_of_instant(e.at)) =>
            {
                if let Some(expiry) = &mut self.expiry {
                    expiry.told = true;
                }
                Step::Expired
            }
            Phase::Open { transport, closing: false, .. } => {
                let silent = tick.since(self.last_heard);
                if silent >= idle {
                    remote_warn!(
                        "{}: silent for {silent:?} (no answer to ping); closing with 1001",
                        self.peer
                    );
                    self.close(CloseCode::Away, "idle timeout", clock, settings);
                    return Step::Left("idle timeout".into());
                }
                if silent >= settings.ping_after && !self.flags.set(PING_SENT, true) {
                    // Encoded here, not by tungstenite, so a parked connection stays parked.
                    transport.outbox.push(frame::encode(Opcode::Ping, b"wschat"));
                    trace!("{}: keep-alive ping", self.peer);
                }
                Step::Done
            }
            Phase::Gone => Step::Gone("gone".into()),
            _ => Step::Done,
        }
    }

    // ----- closing -----

    /// Starts a server-initiated closing handshake: close frame queued, and the client given
    /// `--close-timeout` to answer. False if the connection was not open or already closing.
    pub fn close(&mut self, code: CloseCode, reason: &str, clock: Clock, settings: &Settings) -> bool {
        let Phase::Open { transport, ws, closing, .. } = &mut self.phase else {
            return false;
        };
        if *closing {
            return false;
        }
        *closing = true;
        self.deadline = clock.tick().after(settings.close_timeout);
        let context = &mut ws.active(settings.websocket).context;
        if context
            .close(transport, Some(close_frame(code, reason)))
            .and_then(|()| context.flush(transport))
            .is_err()
        {
            trace!("{}: close frame not queued (already closing)", self.peer);
        }
        true
    }

    /// Disconnects a reader that fell more than `--max-outbound` behind: what it has not
    /// started receiving is dropped and a close 1008 queued after it; the close deadline bounds
    /// how long it can hold on. Returns the reason, or None if it was already closing.
    pub fn cut_off_too_slow(&mut self, clock: Clock, settings: &Settings) -> Option<Why> {
        if !self.accepts_messages() {
            return None;
        }
        remote_warn!(
            "{}: too slow: over {} bytes queued (--max-outbound); disconnecting",
            self.peer,
            settings.max_outbound
        );
        if let Some(transport) = self.transport_mut() {
            transport.outbox.truncate_unstarted();
        }
        const REASON: &str = "too slow: outbound queue limit exceeded";
        self.close(CloseCode::Policy, REASON, clock, settings);
        Some(REASON.into())
    }

    /// The server is shutting down: an open connection is closed with 1001; one still reading
    /// its request head is answered as a newcomer would be now (503, see `Admission`).
    pub fn shut_down(&mut self, clock: Clock, settings: &Settings) -> Step {
        const REASON: &str = "server shutting down";
        if self.is_handshaking() {
            self.admission = super::Admission::ShuttingDown;
            return Step::Done;
        }
        if self.close(CloseCode::Away, REASON, clock, settings) {
            return Step::Left(REASON.into());
        }
        Step::Done
    }

    /// Fails the connection after a protocol error, with the close code RFC 6455 asks for.
    pub(super) fn fail(&mut self, error: WsError, clock: Clock, settings: &Settings) -> Step {
        match Failure::of(error) {
            Failure::Close(code, reason) => self.fail_with(code, reason, clock, settings),
            Failure::Closed => {
                self.finish(clock, settings, false);
                Step::Left("closed".into())
            }
            Failure::Dropped(why) => Step::Gone(why.into()),
        }
    }

    /// Fails the connection with this close code and reason: nothing more it sends is read.
    pub(super) fn fail_with(
        &mut self,
        code: CloseCode,
        reason: String,
        clock: Clock,
        settings: &Settings,
    ) -> Step {
        remote_warn!("{}: {reason}; closing with {}", self.peer, u16::from(code));
        if let Phase::Open { transport, ws, .. } = &mut self.phase {
            let context = &mut ws.active(settings.websocket).context;
            let _ = context.close(transport, Some(close_frame(code, &reason)));
            let _ = context.flush(transport);
        }
        // The client broke the protocol: nothing more it sends is processed (RFC 6455 7.1.7).
        self.finish(clock, settings, true);
        Step::Left(reason.into())
    }

    /// Moves to [`Phase::Finishing`], keeping the socket and whatever is queued for it.
    pub(super) fn finish(&mut self, clock: Clock, settings: &Settings, linger: bool) {
        let transport = match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Head { transport, .. } | Phase::Open { transport, .. } => transport,
            other => {
                self.phase = other;
                return;
            }
        };
        self.deadline = clock.tick().after(settings.close_timeout);
        self.phase = Phase::Finishing { transport, linger, write_shut: false, peer_closed: false };
    }
}
