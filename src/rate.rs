//! Per-connection message rate limit (`--max-messages-per-sec`): a token bucket that holds one
//! second's worth of messages, refilled continuously. A client may burst up to the limit, and
//! sustain the limit, but no more. Eight bytes per connection, integer arithmetic, no IO.

/// One connection's bucket. Tokens are counted in thousandths so that refilling by elapsed
/// milliseconds is exact.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimiter {
    millitokens: u32,
    /// Milliseconds since the server started, at the last refill (wrapping).
    last_ms: u32,
}

/// Highest accepted `--max-messages-per-sec`; keeps `limit * 1000` within `u32`.
pub const MAX_RATE: u32 = 1_000_000;

impl RateLimiter {
    /// A full bucket.
    pub fn new(per_sec: u32, now_ms: u32) -> Self {
        Self { millitokens: per_sec.min(MAX_RATE) * 1000, last_ms: now_ms }
    }

    /// Takes one message's token; false if the client is over `per_sec`.
    pub fn allow(&mut self, per_sec: u32, now_ms: u32) -> bool {
        self.allow_n(per_sec, 1, now_ms)
    }

    /// Takes `n` tokens at once (every frame of a read counts); false if the client is over
    /// `per_sec`.
    pub fn allow_n(&mut self, per_sec: u32, n: u32, now_ms: u32) -> bool {
        let per_sec = per_sec.min(MAX_RATE);
        let elapsed = u64::from(now_ms.wrapping_sub(self.last_ms));
        self.last_ms = now_ms;
        let capacity = u64::from(per_sec) * 1000;
        // A client earns `per_sec` millitokens per millisecond.
        let refilled = (u64::from(self.millitokens) + elapsed * u64::from(per_sec)).min(capacity);
        let cost = u64::from(n) * 1000;
        if refilled < cost {
            self.millitokens = refilled as u32;
            return false;
        }
        self.millitokens = (refilled - cost) as u32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_limit_passes_then_stops() {
        let mut bucket = RateLimiter::new(10, 0);
        assert!((0..10).all(|_| bucket.allow(10, 0)));
        assert!(!bucket.allow(10, 0));
    }

    #[test]
    fn the_limit_is_sustainable_and_refills_over_time() {
        let mut bucket = RateLimiter::new(10, 0);
        for _ in 0..10 {
            bucket.allow(10, 0);
        }
        // One message per 100 ms is exactly 10 per second, for as long as the client likes.
        for step in 1..=100u32 {
            assert!(bucket.allow(10, step * 100), "step {step}");
        }
        assert!(!bucket.allow(10, 10_000), "nothing saved up beyond the rate");
        // A long pause refills to one second's worth, not more.
        assert!((0..10).all(|_| bucket.allow(10, 60_000)));
        assert!(!bucket.allow(10, 60_000));
    }

    #[test]
    fn the_clock_may_wrap() {
        let mut bucket = RateLimiter::new(1, u32::MAX - 10);
        assert!(bucket.allow(1, u32::MAX - 10));
        assert!(!bucket.allow(1, u32::MAX));
        assert!(bucket.allow(1, 990));
    }
}
