//! The open phase's reading: frames through tungstenite (and, for a connection that negotiated
//! permessage-deflate, through the inflating shim first), each read checked against the rate
//! limit, the fragment charge and read backpressure, until a message is handed over, the
//! socket is drained or the turn's budget is spent.

use std::io;

use log::debug;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use super::flags::{PING_SENT, READING_PAUSED};
use super::inflate::Inflating;
use super::{describe_close, meter, Clock, Connection, Phase, Step, Stream};
use crate::deflate::Inflater;
use crate::metrics::Verdict;
use crate::remote_warn;
use crate::settings::Settings;

impl<S: Stream> Connection<S> {
    /// Reads messages until there is one to hand over or nothing more to do this turn.
    pub(super) fn read_messages(
        &mut self,
        settings: &Settings,
        clock: Clock,
        inflater: &mut Inflater,
    ) -> Step {
        loop {
            let Phase::Open { transport, ws, closing, .. } = &mut self.phase else {
                return Step::Done;
            };
            if transport.outbox.queued() > settings.read_pause_bytes || !transport.has_room_for_a_turn() {
                // It is not taking what it is sent: read nothing more until it does (each frame
                // read may queue an answer: a pong, a close).
                self.flags.set(READING_PAUSED, true);
                return Step::Done;
            }
            let is_closing = *closing;
            let active = ws.active(settings.websocket);
            let result = if transport.deflate_window != 0 {
                active.context.read(&mut Inflating { transport, state: &mut active.inflate, inflater })
            } else {
                active.context.read(transport)
            };
            let refusal = active.inflate.take_refusal();
            if std::mem::take(&mut transport.heard) {
                self.last_heard = clock.tick();
                self.flags.set(PING_SENT, false);
            }
            let frames = transport.take_frames();
            let limit = settings.max_messages_per_sec;
            if limit > 0 && frames > 0 && !is_closing && !self.rate.allow_n(limit, frames, clock.ms as u32) {
                remote_warn!(
                    "{}: over {limit} frames per second (--max-messages-per-sec); closing with 1008",
                    self.peer
                );
                let reason = format!("rate limit exceeded: more than {limit} messages per second");
                self.verdict = Some(Verdict::RateLimited);
                self.close(CloseCode::Policy, &reason, clock, settings);
                return Step::Left(reason.into());
            }
            if transport.fragments_over_limit() && !is_closing {
                // Checked before whatever the read produced: a message whose last fragment
                // came in the same read as the one that went over is refused, not delivered.
                let max = settings.max_message_size;
                let reason = format!(
                    "message over {max} bytes, its fragments counted at least {} bytes each",
                    meter::FRAGMENT_MIN_CHARGE
                );
                return self.fail_with(CloseCode::Size, reason, clock, settings);
            }
            if let Some((code, reason)) = refusal {
                // A compressed message broke the protocol or a limit (see `inflate.rs`).
                if is_closing {
                    return Step::Gone(reason.into());
                }
                return self.fail_with(code, reason, clock, settings);
            }
            match result {
                // Data after we started closing is ignored, as RFC 6455 7.1.1 allows.
                Ok(Message::Text(_) | Message::Binary(_)) if is_closing => {}
                Ok(Message::Text(text)) => return Step::Text(text),
                Ok(Message::Binary(data)) => return Step::Binary(data),
                Ok(Message::Close(frame)) => {
                    // Either the client's reply to our close, or its own close, which
                    // tungstenite has answered: push that answer into the queue, then end.
                    let _ = active.context.flush(transport);
                    debug!("{}: closed by client ({})", self.peer, describe_close(frame.as_ref()));
                    self.finish(clock, settings, false);
                    return Step::Left("closed".into());
                }
                // Pings are answered by tungstenite; pongs only prove liveness.
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Everything read so far made whole messages, all handed over: tungstenite
                    // holds nothing a fresh context would not.
                    if !is_closing && transport.between_messages() && ws.inflate_idle() {
                        ws.park();
                    }
                    // With the budget spent, the read was refused for it (`Transport::read`):
                    // the rest waits for the next turn, whatever the poll will report.
                    return if transport.budget_spent() { Step::Yield } else { Step::Done };
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e, clock, settings),
            }
        }
    }
}
