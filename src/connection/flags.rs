//! A connection's yes-or-no state in one byte: every idle connection carries it, and five
//! `bool`s took the four bytes that kept the slab entry over 128.

/// Which of a connection's flags are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u8);

/// A timer is pending in the server's timer queue, at the connection's `timer_at`.
pub const TIMER_ARMED: u8 = 1;
/// A keep-alive ping is outstanding.
pub const PING_SENT: u8 = 1 << 1;
/// WRITABLE interest is registered (only while the socket refused part of the queue).
pub const WRITABLE_INTEREST: u8 = 1 << 2;
/// Listed for a flush at the end of this loop turn.
pub const DIRTY: u8 = 1 << 3;
/// Not read from until its queue drains (read backpressure).
pub const READING_PAUSED: u8 = 1 << 4;

impl Flags {
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Sets or clears `flag`; returns whether it was set before.
    pub fn set(&mut self, flag: u8, on: bool) -> bool {
        let was = self.has(flag);
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_independent() {
        let all = [TIMER_ARMED, PING_SENT, WRITABLE_INTEREST, DIRTY, READING_PAUSED];
        let mut flags = Flags::default();
        for (i, &flag) in all.iter().enumerate() {
            assert!(!flags.set(flag, true));
            assert!(all[..=i].iter().all(|&f| flags.has(f)) && all[i + 1..].iter().all(|&f| !flags.has(f)));
        }
        assert!(flags.set(DIRTY, false));
        assert!(!flags.has(DIRTY) && flags.has(READING_PAUSED) && flags.has(TIMER_ARMED));
    }
}
