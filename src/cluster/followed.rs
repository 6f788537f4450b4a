//! A room this process follows (it has members there): its name as shown, and how far its
//! subscription on the subscription link has got.

use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subscription {
    /// Asked for by the chat; SSUBSCRIBE goes with this turn's write.
    Wanted,
    /// Sent, not yet confirmed.
    Sent,
    /// Confirmed: messages arrive, and the history load has been sent.
    Live,
}

pub(super) struct Followed {
    pub(super) display: Rc<str>,
    pub(super) subscription: Subscription,
}
