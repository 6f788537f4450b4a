//! The samples of a `--shootout` step, as the workers and the coordinator share them: per
//! sample, how many clients have it and, once all do, its time. Receivers record arrivals
//! ([`Samples::delivered`]), senders ask whether their next sample may go
//! ([`Samples::may_send`]), and [`super::shootout`] begins and reads each step.

use std::sync::atomic::{AtomicU64, Ordering};

use super::wire::Token;

/// The samples of the step under way.
pub struct Samples {
    senders: u64,
    pub per_sender: u64,
    /// The step being sampled, from 1; 0 while clients are connecting.
    step: AtomicU64,
    /// Clients each sample must reach.
    receivers: AtomicU64,
    /// Per sample (sender-major): clients that have it.
    received: Vec<AtomicU64>,
    /// Per sample: its time in nanoseconds once every client has it, else 0.
    complete_ns: Vec<AtomicU64>,
}

impl Samples {
    pub fn new(senders: usize, samples: usize) -> Self {
        let per_sender = samples.div_ceil(senders.max(1)) as u64;
        let total = per_sender as usize * senders;
        Self {
            senders: senders as u64,
            per_sender,
            step: AtomicU64::new(0),
            receivers: AtomicU64::new(u64::MAX),
            received: (0..total).map(|_| AtomicU64::new(0)).collect(),
            complete_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Starts sampling `step` (from 1) with every sample due at `receivers` clients.
    pub fn begin(&self, step: u64, receivers: u64) {
        for (received, complete) in self.received.iter().zip(&self.complete_ns) {
            received.store(0, Ordering::Relaxed);
            complete.store(0, Ordering::Relaxed);
        }
        self.receivers.store(receivers, Ordering::Relaxed);
        self.step.store(step, Ordering::Release);
    }

    /// Stops the senders between steps.
    pub fn pause(&self) {
        self.step.store(0, Ordering::Release);
    }

    /// The sequence numbers of the step under way: a sender's samples in step s are
    /// `(s - 1) * per_sender ..` so that a late copy from an earlier step is never counted.
    pub fn window(&self) -> Option<(u64, u64)> {
        let step = self.step.load(Ordering::Acquire);
        let first = step.checked_sub(1)? * self.per_sender;
        Some((first, first + self.per_sender))
    }

    fn index(&self, sender: u32, seq: u64) -> Option<usize> {
        let (first, end) = self.window()?;
        (u64::from(sender) < self.senders && (first..end).contains(&seq))
            .then(|| (u64::from(sender) * self.per_sender + seq - first) as usize)
    }

    /// A client received `token` at `now_ns`.
    pub fn delivered(&self, token: Token, now_ns: u64) {
        let Some(at) = self.index(token.sender, token.seq) else { return };
        let have = self.received[at].fetch_add(1, Ordering::Relaxed) + 1;
        if have == self.receivers.load(Ordering::Relaxed) {
            self.complete_ns[at].store(now_ns.saturating_sub(token.sent_ns).max(1), Ordering::Release);
        }
    }

    /// Whether `sender` may send sample `seq`: the first of its step, or its previous sample
    /// has reached everyone.
    pub fn may_send(&self, sender: u32, seq: u64) -> bool {
        match self.window() {
            Some((first, _)) if seq == first => true,
            Some((first, end)) if seq > first && seq < end => self
                .index(sender, seq - 1)
                .is_some_and(|at| self.complete_ns[at].load(Ordering::Acquire) != 0),
            _ => false,
        }
    }

    /// Samples of the step that have reached every client.
    pub fn completed(&self) -> usize {
        self.complete_ns.iter().filter(|ns| ns.load(Ordering::Acquire) != 0).count()
    }

    /// The completed samples' times, sorted.
    pub fn times(&self) -> Vec<u64> {
        let mut times: Vec<u64> =
            self.complete_ns.iter().map(|ns| ns.load(Ordering::Acquire)).filter(|&ns| ns != 0).collect();
        times.sort_unstable();
        times
    }

    /// Samples per step, all senders together.
    pub fn total(&self) -> usize {
        self.complete_ns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_completes_when_the_last_client_has_it_and_old_steps_never_count() {
        let samples = Samples::new(2, 4);
        assert_eq!(samples.per_sender, 2);
        assert!(!samples.may_send(0, 0), "nothing before a step begins");
        samples.begin(1, 3);
        assert!(samples.may_send(0, 0) && samples.may_send(1, 0));
        assert!(!samples.may_send(0, 1), "the first sample has not arrived anywhere");
        let token = |sender, seq, sent_ns| Token { sender, seq, sent_ns };
        samples.delivered(token(0, 0, 100), 150);
        samples.delivered(token(0, 0, 100), 170);
        assert!(!samples.may_send(0, 1), "two of three clients");
        samples.delivered(token(0, 0, 100), 400);
        assert!(samples.may_send(0, 1));
        assert_eq!((samples.completed(), samples.times()), (1, vec![300]));
        assert!(!samples.may_send(0, 2), "two samples per sender per step");

        samples.begin(2, 3);
        assert_eq!(samples.completed(), 0);
        for _ in 0..3 {
            samples.delivered(token(0, 1, 100), 900); // a late copy from step 1
            samples.delivered(token(7, 2, 100), 900); // no such sender
        }
        assert_eq!(samples.completed(), 0);
        assert!(samples.may_send(0, 2) && !samples.may_send(0, 3));
    }
}
