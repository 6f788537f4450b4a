//! `permessage-deflate` (RFC 7692), compressed once per room.
//!
//! Most servers keep a zlib state per connection for this extension (about 300 KiB with the
//! default window), which is why node `ws` users reported gigabytes for it and Socket.IO turned
//! it off. wschat accepts the extension only with no context takeover in both directions, so
//! every message is compressed and inflated on its own, and keeps no zlib state per connection:
//!
//! - [`negotiate`]: the handshake's offers and answers;
//! - [`codec`]: the loop's one [`Compressor`] and one [`Inflater`], a message at a time;
//! - [`outgoing`]: a broadcast framed once plain and compressed once (per window size asked
//!   for), each recipient given the frame it negotiated: one compression per room and mode, as
//!   uWebSockets' `SHARED_COMPRESSOR` does;
//! - the way in, which sits between the socket and tungstenite, is the connection's
//!   (`connection/inflate.rs`).

pub mod codec;
pub mod negotiate;
pub mod outgoing;

pub use codec::{Compressor, InflateError, Inflater};
pub use negotiate::Agreement;
pub use outgoing::{Deflation, Outgoing};
