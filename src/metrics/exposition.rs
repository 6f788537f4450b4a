//! The Prometheus text exposition of one snapshot, written by the `prometheus-client` crate's
//! encoder: a [`Collector`] over the snapshot's plain numbers, registered in a registry made
//! for the scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Counters, Gauges, Verdict, TURN_BUCKETS};

/// The text a scrape of `/metrics` receives.
pub fn render(counters: &Counters, gauges: &Gauges) -> String {
    let mut registry = Registry::with_prefix("wschat");
    registry.register_collector(Box::new(Snapshot { counters: counters.clone(), gauges: gauges.clone() }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

#[derive(Debug)]
struct Snapshot {
    counters: Counters,
    gauges: Gauges,
}

const KINDS: [&str; 2] = ["text", "binary"];

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_connections(&mut encoder)?;
        self.encode_traffic(&mut encoder)?;
        self.encode_chat(&mut encoder)?;
        self.encode_loop(&mut encoder)
    }
}

impl Snapshot {
    /// Connections: open ones by state, accepted, and turned away by reason.
    fn encode_connections(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let (c, g) = (&self.counters, &self.gauges);
        let open = [("handshake", g.handshaking), ("chat", g.chat), ("echo", g.echo), ("closing", g.closing)];
        family(encoder, "connections_open", "Connections by state", None, MetricType::Gauge, "state", &open)?;
        counter(encoder, "connections_accepted", "TCP connections accepted", None, c.accepted)?;
        let refused: Vec<(&str, u64)> =
            Verdict::REFUSALS.iter().zip(c.refused).map(|((_, label), n)| (*label, n)).collect();
        family(
            encoder,
            "connections_rejected",
            "Connections turned away, by reason",
            None,
            MetricType::Counter,
            "reason",
            &refused,
        )
    }

    /// What flows through: messages and deliveries by kind, bytes each way, and the clients
    /// cut off for reading too slowly or sending too fast.
    fn encode_traffic(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let c = &self.counters;
        let by_kind = |counts: [u64; 2]| -> Vec<(&str, u64)> { KINDS.into_iter().zip(counts).collect() };
        family(
            encoder,
            "messages_received",
            "Data messages received from clients",
            None,
            MetricType::Counter,
            "kind",
            &by_kind(c.messages_received),
        )?;
        family(
            encoder,
            "deliveries",
            "Data frames queued to clients; each recipient of a broadcast counts",
            None,
            MetricType::Counter,
            "kind",
            &by_kind(c.deliveries),
        )?;
        counter(encoder, "received", "Bytes read from clients, after TLS", Some(&Unit::Bytes), c.bytes_in)?;
        counter(encoder, "sent", "Bytes written to clients, before TLS", Some(&Unit::Bytes), c.bytes_out)?;
        counter(
            encoder,
            "compressions",
            "Messages compressed with permessage-deflate, once for all the recipients that share the frame",
            None,
            c.compressions,
        )?;
        family(
            encoder,
            "compressed_payload",
            "Payload bytes of the messages compressed, before and after",
            Some(&Unit::Bytes),
            MetricType::Counter,
            "side",
            &[("before", c.compressed_from_bytes), ("after", c.compressed_to_bytes)],
        )?;
        counter(
            encoder,
            "slow_readers_cut_off",
            "Readers closed with 1008 for falling --max-outbound behind",
            None,
            c.slow_readers_cut_off,
        )?;
        counter(
            encoder,
            "rate_limited",
            "Clients closed with 1008 for passing --max-messages-per-sec",
            None,
            c.rate_limited,
        )
    }

    /// The chat: rooms, members, the history kept and what it costs, and its durable commits.
    fn encode_chat(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let (c, g) = (&self.counters, &self.gauges);
        gauge(encoder, "rooms", "Chat rooms", None, g.rooms as f64)?;
        gauge(encoder, "members", "Chat members", None, g.members as f64)?;
        let kept = "Messages kept in rooms' history";
        gauge(encoder, "history_messages", kept, None, g.history_messages as f64)?;
        let cost = "What the kept messages cost: text, nick and a fixed part each";
        gauge(encoder, "history", cost, Some(&Unit::Bytes), g.history_bytes as f64)?;
        gauge(encoder, "bans", "Bans held (ended ones until they are met)", None, g.bans as f64)?;
        let commits = "Durable history transactions committed (--data-dir)";
        counter(encoder, "history_commits", commits, None, c.history_commits)?;
        let Some(requests) = &c.api_requests else { return Ok(()) };
        let help = "HTTP API requests answered (--api), by endpoint and status";
        let mut metric = encoder.encode_descriptor("api_requests", help, None, MetricType::Counter)?;
        for (endpoint, status, count) in requests {
            let status = status.to_string();
            let labels = [("endpoint", *endpoint), ("status", status.as_str())];
            ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// The loop and its process: bytes still to write, how long turns take, the cluster link,
    /// and when the process started.
    fn encode_loop(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let (c, g) = (&self.counters, &self.gauges);
        let outbox = "Bytes queued for clients, not yet written";
        gauge(encoder, "outbox", outbox, Some(&Unit::Bytes), g.outbox_bytes as f64)?;
        // Per-bucket counts: the encoder sums them into the cumulative `le` series itself, and
        // writes the bound f64::MAX as `+Inf`.
        let within: u64 = c.turns.buckets.iter().sum();
        let buckets: Vec<(f64, u64)> = TURN_BUCKETS
            .iter()
            .copied()
            .zip(c.turns.buckets)
            .chain(std::iter::once((f64::MAX, c.turns.count - within)))
            .collect();
        let histogram = Histogram { sum: c.turns.sum_seconds, count: c.turns.count, buckets };
        let metric = encoder.encode_descriptor(
            "loop_turn_duration",
            "Time the loop spent on each turn's work (not its wait)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        histogram.encode(metric)?;
        if let Some(linked) = g.cluster_linked {
            let help = "1 while Redis links this process to the others (--redis), 0 while it runs alone";
            gauge(encoder, "cluster_linked", help, None, f64::from(u8::from(linked)))?;
        }
        if let Some(saturations) = c.cluster_saturations {
            let help = "Times what waits on Redis passed the bound past which no client is read (--redis)";
            counter(encoder, "cluster_saturated", help, None, saturations)?;
        }
        let started = "When the server started, since the Unix epoch";
        gauge(encoder, "process_start_time", started, Some(&Unit::Seconds), g.start_time_seconds)
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

/// One metric with a value per label (`state="chat"`, ...).
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (value_label, value) in values {
        let labels = [(label, *value_label)];
        let member = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*value).encode(member)?,
            _ => ConstGauge::new(*value as i64).encode(member)?,
        }
    }
    Ok(())
}

/// A histogram from counts kept elsewhere: per-bucket counts, sum and count.
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_in_the_text_format() {
        let mut counters = Counters { accepted: 3, deliveries: [10, 2], ..Counters::default() };
        counters.count_verdict(Verdict::Origin);
        counters.count_verdict(Verdict::RateLimited);
        counters.turns.record(std::time::Duration::from_micros(30));
        let gauges = Gauges { chat: 2, rooms: 1, members: 2, start_time_seconds: 1.5e9, ..Gauges::default() };
        let text = render(&counters, &gauges);
        for line in [
            "# TYPE wschat_connections_accepted counter",
            "wschat_connections_accepted_total 3",
            "wschat_connections_rejected_total{reason=\"origin\"} 1",
            "wschat_rate_limited_total 1",
            "wschat_deliveries_total{kind=\"text\"} 10",
            "wschat_connections_open{state=\"chat\"} 2",
            "wschat_loop_turn_duration_seconds_bucket{le=\"0.00005\"} 1",
            "wschat_loop_turn_duration_seconds_count 1",
            "wschat_loop_turn_duration_seconds_bucket{le=\"0.001\"} 1",
            "wschat_loop_turn_duration_seconds_bucket{le=\"+Inf\"} 1",
            "wschat_process_start_time_seconds 1500000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
