//! When this process renews a room's expiry in Redis. A room's keys live a month past its last
//! message (`room::ROOM_TTL_SECS`); renewing them on every say-script call was two of its six
//! Redis calls, for a deadline a month away. So a call renews them only if this process has
//! not for an hour (or the script starts the room): a room expires between 30 days less an
//! hour and 30 days after its last message.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often, at most, this process renews one room's expiry.
pub const RENEW_EVERY: Duration = Duration::from_secs(3600);

/// The rooms whose expiry this process renewed within the hour, and when.
pub(super) struct Renewals {
    at: HashMap<Rc<str>, Instant>,
    /// When the map was last rid of entries past the hour (once an hour: it holds one entry
    /// per room said in meanwhile).
    pruned: Instant,
}

impl Renewals {
    pub(super) fn new(now: Instant) -> Self {
        Self { at: HashMap::new(), pruned: now }
    }

    /// Whether a call for `room` at `now` renews its expiry (and if so, it counts as renewed).
    pub(super) fn due(&mut self, room: &Rc<str>, now: Instant) -> bool {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < RENEW_EVERY;
        if now.saturating_duration_since(self.pruned) >= RENEW_EVERY {
            self.at.retain(|_, at| fresh(at));
            self.pruned = now;
        }
        if self.at.get(room).is_some_and(fresh) {
            return false;
        }
        self.at.insert(room.clone(), now);
        true
    }

    /// The link was lost: Redis may have lost the keys' expiry with them (a restart without
    /// persistence), so the next call for each room renews it.
    pub(super) fn forget(&mut self) {
        self.at.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_renewed_once_an_hour_and_after_the_link_is_lost() {
        let t0 = Instant::now();
        let mut renewals = Renewals::new(t0);
        let (a, b): (Rc<str>, Rc<str>) = (Rc::from("a"), Rc::from("b"));
        assert!(renewals.due(&a, t0));
        assert!(!renewals.due(&a, t0 + Duration::from_secs(1)));
        assert!(renewals.due(&b, t0 + Duration::from_secs(1)), "each room on its own");
        assert!(!renewals.due(&a, t0 + RENEW_EVERY - Duration::from_nanos(1)));
        let later = t0 + RENEW_EVERY + Duration::from_secs(1);
        assert!(renewals.due(&a, later));
        // Pruned: b's entry is past the hour and gone, a's renewed one stays.
        assert_eq!(renewals.at.len(), 1);
        renewals.forget();
        assert!(renewals.due(&a, later + Duration::from_secs(1)));
    }
}
