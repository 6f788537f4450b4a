//! What this process's clients have on its way through Redis: a client's room message or event
//! is *in flight* from its publish until it comes back on the subscription (its payload's
//! ORIGIN names the client), and the hub reads nothing more from a client with something in
//! flight. So a fast client is slowed to what Redis carries, and its own line comes back before
//! the answer to anything it sends next.
//!
//! A sender is let go when the chat *has* what came back ([`InFlight::release_returned`], at
//! the hand-over of notices), not when it is read: read in between, what the client sent next
//! could be answered first (a guest's `/join` once overtook its own join). A departed
//! connection's messages are counted apart (*ghosts*), so that theirs coming back does not let
//! go of the next connection in the slot. Nothing is held for ever: a message lost between
//! publish and subscription releases its sender after the broker's patience (its reply
//! timeout).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::chat::{ClientId, Event};

/// How many messages one client has in flight, and when the last left.
type Counts = HashMap<ClientId, (u32, Instant)>;

pub(super) struct InFlight {
    /// How long a sender is held at most.
    patience: Duration,
    clients: Counts,
    ghosts: Counts,
    /// Senders of what came back this turn, let go once the chat has it.
    returned: Vec<ClientId>,
    /// A client's own announcement (its join, its nick change) on its way: should the link fail
    /// before it comes back, it is announced here instead, so the client always hears it.
    pub(super) unechoed: HashMap<ClientId, (Rc<str>, Event)>,
}

impl InFlight {
    pub(super) fn new(patience: Duration) -> Self {
        Self {
            patience,
            clients: Counts::new(),
            ghosts: Counts::new(),
            returned: Vec::new(),
            unechoed: HashMap::new(),
        }
    }

    /// A client's room message or event left for Redis at `now`.
    pub(super) fn sent_by(&mut self, client: ClientId, now: Instant) {
        let entry = self.clients.entry(client).or_insert((0, now));
        *entry = (entry.0 + 1, now);
    }

    pub(super) fn holds(&self, client: ClientId) -> bool {
        !self.clients.is_empty() && self.clients.contains_key(&client)
    }

    /// One of `client`'s messages came back (its ORIGIN named this process); the client, unless
    /// it departed (its id may be another's by now).
    pub(super) fn came_back(&mut self, client: ClientId) -> Option<ClientId> {
        self.returned.push(client);
        (!self.ghosts.contains_key(&client)).then_some(client)
    }

    /// The senders of what came back, now that the chat has it: one message fewer each.
    pub(super) fn release_returned(&mut self) {
        for client in self.returned.drain(..) {
            let counts = if self.ghosts.contains_key(&client) { &mut self.ghosts } else { &mut self.clients };
            if let Some((count, _)) = counts.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&client);
                    self.unechoed.remove(&client);
                }
            }
        }
    }

    /// The connection left: what it has in flight is a ghost's.
    pub(super) fn forget(&mut self, client: ClientId) {
        if let Some(gone) = self.clients.remove(&client) {
            let ghost = self.ghosts.entry(client).or_insert((0, gone.1));
            *ghost = (ghost.0 + gone.0, gone.1);
        }
        self.unechoed.remove(&client);
    }

    /// Lets go of senders whose messages have not come back within the patience (lost between
    /// publish and a subscription not yet live): read again rather than held for ever.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.clients.is_empty() && self.ghosts.is_empty() {
            return;
        }
        let patience = self.patience;
        self.clients.retain(|_, (_, last)| now < *last + patience);
        self.ghosts.retain(|_, (_, last)| now < *last + patience);
        let clients = &self.clients;
        self.unechoed.retain(|client, _| clients.contains_key(client));
    }

    /// When [`Self::expire`] next lets someone go.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.clients.values().map(|(_, last)| *last + self.patience).min()
    }

    /// The link failed: nothing will come back. The announcements never echoed are returned,
    /// in the order their clients came.
    pub(super) fn clear(&mut self) -> Vec<(ClientId, (Rc<str>, Event))> {
        self.clients.clear();
        self.ghosts.clear();
        self.returned.clear();
        let mut unechoed: Vec<_> = std::mem::take(&mut self.unechoed).into_iter().collect();
        unechoed.sort_unstable_by_key(|(client, _)| *client);
        unechoed
    }
}
