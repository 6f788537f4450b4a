//! The hub's part in a graceful shutdown: every client told once and closed with 1001, and
//! while they close, the hub *draining*: newcomers and `/healthz` probes are answered 503 (see
//! `Hub::admission` and `report.rs`), and the loop waits only for the sessions.

use std::time::Instant;

use super::{Hub, SHUTDOWN_NOTICE};
use crate::chat::{Chat, Event, Mode};
use crate::connection::{Step, Stream};
use crate::deflate::Outgoing;
use crate::frame::Opcode;

impl<S: Stream> Hub<S> {
    /// The server is shutting down: open connections are closed with 1001; those still
    /// reading their request head no longer count, and are answered 503 like newcomers. Chat members are told once that the server is going away, and not that
    /// each of the others left: they all are leaving.
    pub fn shut_down(&mut self, now: Instant) {
        self.draining = true;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let notice = Event::notice(SHUTDOWN_NOTICE);
        let mut notice = Mode::ALL
            .map(|mode| Outgoing::new(Opcode::Text, notice.render(mode).unwrap_or_default().as_bytes()));
        for &key in &keys {
            if let Some(mode) = self.chat.mode(key) {
                self.fanout.queue(&mut self.conns, key, &mut notice[mode as usize]);
            }
        }
        self.chat = Chat::with_limits(self.settings.chat);
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.is_handshaking() && conn.is_counted() {
                // Answered 503 like the newcomers, and not waited for.
                let address = conn.peer().ip();
                self.uncount(address);
            }
            let clock = self.clock(now);
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.shut_down(clock, &self.settings) {
                Step::Gone(why) => self.remove(key, &why, now),
                Step::Left(why) => {
                    self.leave_chat(key, &why, now);
                    self.after_activity(key, now);
                }
                _ => {}
            }
        }
    }

    /// Whether a client session is still open or closing: what a shutdown waits for. Counted
    /// connections are exactly those (the ones still reading their head stopped counting when
    /// the drain began, and the probes and newcomers since are never counted), so a probe that
    /// holds its socket open after its 503 cannot hold the exit.
    pub fn has_sessions(&self) -> bool {
        self.clients > 0
    }
}
