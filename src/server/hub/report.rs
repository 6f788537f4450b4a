//! What the hub reports to operators: the metrics exposition, its counters plus gauges read
//! off the current state (connections by state, queued bytes, rooms, members, history, bans,
//! the link), and the answer to `GET /healthz` on the chat port.

use std::time::Instant;

use super::Hub;
use crate::connection::{ConnState, Route, Stream};
use crate::health::Health;
use crate::metrics::{Counters, Gauges};

impl<S: Stream> Hub<S> {
    /// What has been counted so far (the loop adds its turn times).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// The metrics exposition: the counters, and gauges read off the current state.
    /// `api_requests`: the HTTP API's replies by endpoint and status, with `--api`.
    pub fn render_metrics(
        &self,
        start_time_seconds: f64,
        api_requests: Option<Vec<(&'static str, u16, u64)>>,
    ) -> String {
        let mut gauges = Gauges { start_time_seconds, ..Gauges::default() };
        for (_, conn) in &self.conns {
            match conn.state() {
                ConnState::Handshake => gauges.handshaking += 1,
                ConnState::Open(Route::Chat) => gauges.chat += 1,
                ConnState::Open(Route::Echo) => gauges.echo += 1,
                ConnState::Closing => gauges.closing += 1,
            }
            gauges.outbox_bytes += conn.queued() as u64;
        }
        gauges.rooms = self.chat.room_count() as u64;
        gauges.cluster_linked = self.broker.linked();
        gauges.members = self.chat.len() as u64;
        gauges.bans = self.chat.bans().len() as u64;
        let (messages, bytes) = self.chat.history_size();
        (gauges.history_messages, gauges.history_bytes) = (messages as u64, bytes as u64);
        let counters = Counters {
            bytes_out: self.fanout.bytes_written,
            compressions: self.fanout.deflation.compressed,
            compressed_from_bytes: self.fanout.deflation.bytes_in,
            compressed_to_bytes: self.fanout.deflation.bytes_out,
            history_commits: self.fanout.barrier.commits,
            cluster_saturations: self.broker.saturations(),
            api_requests,
            ..self.counters.clone()
        };
        crate::metrics::render(&counters, &gauges)
    }

    /// Answers the health check connection `key` made (`head_only`: it asked with `HEAD`).
    pub(super) fn answer_health(&mut self, key: usize, head_only: bool, now: Instant) {
        // Those counted against --max-connections (the probe itself aside): known without a
        // scan of them all, which a probe on the public port must not cost.
        let asking = self.conns.get(key).is_some_and(|conn| conn.is_counted());
        let connections = self.clients - usize::from(asking);
        let health = Health { connections, cluster: self.broker.linked(), shutting_down: self.draining };
        let clock = self.clock(now);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.answer(health.reply(head_only), clock, &self.settings);
        }
    }
}
