//! tungstenite's protocol state for an open WebSocket, held only while a connection is busy.
//!
//! A `WebSocketContext` is 256 bytes, plus a read buffer of `--read-buffer-size` (256 bytes by
//! default) that tungstenite allocates when the context is made. Most chat connections are
//! idle most of the time, and between two messages the context holds nothing a fresh one would
//! not: no partial frame (the transport's frame meter knows where frames end), no fragmented
//! message, no pong or close waiting to be written (the transport takes every write at once),
//! no close under way. So an idle connection drops its context ("parks") and makes a fresh one
//! when bytes arrive again: an idle connection costs the slab 8 bytes for it instead of about
//! 530 on and off the slab, and a busy one pays two small allocations per readable event (not per
//! message, and never per delivery).
//!
//! A connection that negotiated permessage-deflate keeps its place in its compressed input
//! here too (see `inflate.rs`): it is empty between messages, so it parks the same way.

use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use super::inflate::InflateState;

/// The context of an open WebSocket, or nothing while the connection is parked.
#[derive(Debug, Default)]
pub struct Protocol(Option<Box<Active>>);

/// What a busy connection holds.
#[derive(Debug)]
pub struct Active {
    pub context: WebSocketContext,
    pub inflate: InflateState,
}

impl Protocol {
    /// The context, made fresh if the connection was parked.
    pub fn active(&mut self, config: WebSocketConfig) -> &mut Active {
        self.0.get_or_insert_with(|| {
            Box::new(Active {
                context: WebSocketContext::new(Role::Server, Some(config)),
                inflate: InflateState::default(),
            })
        })
    }

    /// Holds nothing a fresh context would not, as far as the compressed input goes (the
    /// caller knows the rest from the frame meter).
    pub fn inflate_idle(&self) -> bool {
        self.0.as_ref().is_none_or(|active| active.inflate.is_idle())
    }

    /// Drops the context. Only for a connection between messages, with nothing unwritten:
    /// the caller knows that from the frame meter.
    pub fn park(&mut self) {
        self.0 = None;
    }

    pub fn is_parked(&self) -> bool {
        self.0.is_none()
    }
}
