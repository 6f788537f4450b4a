//! How a connection ends, and its deadlines: keep-alive pings and the idle timeout, the
//! handshake and close deadlines, server-initiated closes (including the slow-reader cut-off
//! and shutdown), protocol failures, and the finishing phase that sends a last reply.

use std::time::Instant;

use log::{debug, trace};
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;

use super::{close_frame, Connection, Failure, Phase, Step, Stream, Why, TOKEN_GRACE};
use crate::frame::{self, Opcode};
use crate::metrics::Verdict;
use crate::remote_warn;
use crate::settings::Settings;

impl<S: Stream> Connection<S> {
    // ----- timers -----

    /// When this connection next needs attention: its handshake or close deadline, or its
    /// next keep-alive check.
    pub fn deadline(&self, settings: &Settings) -> Option<Instant> {
        let idle = settings.idle_timeout;
        match &self.phase {
            Phase::Head { deadline, .. }
            | Phase::Finishing { deadline, .. }
            | Phase::Open { closing: Some(deadline), .. } => Some(*deadline),
            Phase::Open { closing: None, .. } => {
                let keep_alive = self.last_heard + if self.ping_sent { idle } else { settings.ping_after };
                let expiry = self.expiry.as_deref().and_then(|e| {
                    if e.told {
                        e.at.checked_add(TOKEN_GRACE)
                    } else {
                        Some(e.at)
                    }
                });
                Some(expiry.map_or(keep_alive, |expiry| expiry.min(keep_alive)))
            }
            Phase::Gone => None,
        }
    }

    /// Notes a timer queued for `at`; false if an earlier one is already pending (the queue
    /// then needs no new entry).
    pub fn arm_timer(&mut self, at: Instant) -> bool {
        if self.timer_at.is_some_and(|current| current <= at) {
            return false;
        }
        self.timer_at = Some(at);
        true
    }

    /// Whether a timer entry popped from the queue is this connection's current one (entries
    /// left behind by an earlier deadline, or by a previous user of the slab key, are not).
    pub fn take_timer(&mut self, serial: u64, at: Instant) -> bool {
        if !self.has_timer(serial, at) {
            return false;
        }
        self.timer_at = None;
        true
    }

    /// Whether the queue entry `(serial, at)` is this connection's pending timer.
    pub fn has_timer(&self, serial: u64, at: Instant) -> bool {
        self.serial == serial && self.timer_at == Some(at)
    }

    /// A timer fired: drop a stalled handshake or close, ping a quiet client, close a silent one.
    pub fn on_timer(&mut self, now: Instant, settings: &Settings) -> Step {
        let idle = settings.idle_timeout;
        match &mut self.phase {
            Phase::Head { deadline, .. } if now >= *deadline => {
                remote_warn!(
                    "{}: handshake not completed within {:?}; dropping",
                    self.peer,
                    settings.handshake_timeout
                );
                self.verdict = Some(Verdict::HandshakeTimeout);
                Step::Gone("handshake timeout".into())
            }
            Phase::Finishing { deadline, .. } | Phase::Open { closing: Some(deadline), .. }
                if now >= *deadline =>
            {
                debug!("{}: close not completed in time", self.peer);
                Step::Gone("close timeout".into())
            }
            Phase::Open { closing: None, .. }
                if self
                    .expiry
                    .as_deref()
                    .is_some_and(|e| e.told && now.saturating_duration_since(e.at) >= TOKEN_GRACE) =>
            {
                debug!("{}: token expired and not renewed; closing with 1008", self.peer);
                self.close(CloseCode::Policy, "token expired", now, settings);
                Step::Left("token expired".into())
            }
            Phase::Open { closing: None, .. }
                if self.expiry.as_deref().is_some_and(|e| !e.told && now >= e.at) =>
            {
                if let Some(expiry) = &mut self.expiry {
                    expiry.told = true;
                }
                Step::Expired
            }
            Phase::Open { transport, closing: None, .. } => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= idle {
                    remote_warn!(
                        "{}: silent for {silent:?} (no answer to ping); closing with 1001",
                        self.peer
                    );
                    self.close(CloseCode::Away, "idle timeout", now, settings);
                    return Step::Left("idle timeout".into());
                }
                if silent >= settings.ping_after && !self.ping_sent {
                    self.ping_sent = true;
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
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant, settings: &Settings) -> bool {
        let Phase::Open { transport, ws, closing, .. } = &mut self.phase else {
            return false;
        };
        if closing.is_some() {
            return false;
        }
        *closing = Some(now + settings.close_timeout);
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
    pub fn cut_off_too_slow(&mut self, now: Instant, settings: &Settings) -> Option<Why> {
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
        self.close(CloseCode::Policy, REASON, now, settings);
        Some(REASON.into())
    }

    /// The server is shutting down: an open connection is closed with 1001; one still reading
    /// its request head is answered as a newcomer would be now (503, see `Admission`).
    pub fn shut_down(&mut self, now: Instant, settings: &Settings) -> Step {
        const REASON: &str = "server shutting down";
        if self.is_handshaking() {
            self.admission = super::Admission::ShuttingDown;
            return Step::Done;
        }
        if self.close(CloseCode::Away, REASON, now, settings) {
            return Step::Left(REASON.into());
        }
        Step::Done
    }

    /// Fails the connection after a protocol error, with the close code RFC 6455 asks for.
    pub(super) fn fail(&mut self, error: WsError, now: Instant, settings: &Settings) -> Step {
        match Failure::of(error) {
            Failure::Close(code, reason) => self.fail_with(code, reason, now, settings),
            Failure::Closed => {
                self.finish(now, settings, false);
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
        now: Instant,
        settings: &Settings,
    ) -> Step {
        remote_warn!("{}: {reason}; closing with {}", self.peer, u16::from(code));
        if let Phase::Open { transport, ws, .. } = &mut self.phase {
            let context = &mut ws.active(settings.websocket).context;
            let _ = context.close(transport, Some(close_frame(code, &reason)));
            let _ = context.flush(transport);
        }
        // The client broke the protocol: nothing more it sends is processed (RFC 6455 7.1.7).
        self.finish(now, settings, true);
        Step::Left(reason.into())
    }

    /// Moves to [`Phase::Finishing`], keeping the socket and whatever is queued for it.
    pub(super) fn finish(&mut self, now: Instant, settings: &Settings, linger: bool) {
        let transport = match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Head { transport, .. } | Phase::Open { transport, .. } => transport,
            other => {
                self.phase = other;
                return;
            }
        };
        let deadline = now + settings.close_timeout;
        self.phase = Phase::Finishing { transport, deadline, linger, write_shut: false, peer_closed: false };
    }
}
