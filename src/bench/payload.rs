//! What a received frame says, once it is plain: [`Inflating`] turns a compressed message
//! (RSV1 set, `permessage-deflate` without context takeover) back into the message the bench
//! looks for its token in, and [`is_json_replay`] tells a JSON-mode message from the room's
//! history (which must not count) from a live one.
//!
//! One [`Inflating`] per worker thread serves all its connections: with no context takeover
//! nothing outlives a message, and its output buffer is reused, so a compressed delivery
//! allocates nothing once the buffer has grown to the largest message.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::deflate::{InflateError, Inflater};

/// Largest message the bench inflates (the largest frame it accepts).
pub const MAX_MESSAGE: usize = 64 << 20;

/// RSV1: the message is compressed (RFC 7692 6.1).
const RSV1: u8 = 0x40;
const FIN: u8 = 0x80;

/// A worker's inflater and the buffer its messages are inflated into.
#[derive(Debug, Default)]
pub struct Inflating {
    inflater: Inflater,
    out: Vec<u8>,
}

impl Inflating {
    /// The message a frame carries: its payload as is, or inflated when RSV1 is set. An error
    /// (which fails the connection) for RSV1 on a connection that did not negotiate the
    /// extension or on a control frame, for a compressed message in fragments (the bench reads
    /// whole messages; wschat never fragments what it sends), and for a payload that does not
    /// inflate.
    pub fn message<'a>(
        &'a mut self,
        first_byte: u8,
        payload: &'a [u8],
        negotiated: bool,
    ) -> Result<&'a [u8], String> {
        if first_byte & RSV1 == 0 {
            return Ok(payload);
        }
        if !negotiated {
            return Err("the server compressed a message (RSV1) without permessage-deflate".into());
        }
        match first_byte & 0x0f {
            1 | 2 if first_byte & FIN != 0 => {}
            1 | 2 => {
                return Err(
                    "the server sent a compressed message in fragments, which the bench does not read".into(),
                )
            }
            opcode => return Err(format!("the server set RSV1 on a frame of opcode {opcode}")),
        }
        self.out.clear();
        self.inflater.inflate(payload, MAX_MESSAGE, &mut self.out).map_err(|e| match e {
            InflateError::TooBig => format!("a compressed message inflates past {MAX_MESSAGE} bytes"),
            InflateError::Corrupt(why) => format!("a compressed message does not inflate: {why}"),
        })?;
        Ok(&self.out)
    }
}

/// `"replay":true`, which marks a JSON-mode message from the room's history (see
/// docs/PROTOCOL.md, "JSON mode"); JSON escapes any quote inside a text, so it cannot come
/// from what somebody wrote.
static REPLAY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"replay\":true"));

/// Whether a JSON-mode message (the whole object) comes from the room's history. A search of a
/// few hundred bytes, made only for messages that carry a token.
pub fn is_json_replay(message: &[u8]) -> bool {
    REPLAY.find(message).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Compressor;

    fn compressed(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(Compressor::default().compress(text, 15, &mut out));
        out
    }

    #[test]
    fn plain_frames_pass_and_compressed_ones_inflate_into_one_reused_buffer() {
        let mut inflating = Inflating::default();
        assert_eq!(inflating.message(0x81, b"plain", true).unwrap(), b"plain");
        assert_eq!(inflating.message(0x81, b"plain", false).unwrap(), b"plain");
        let first = "alice: shall we meet at noon, or is that too early for everyone? ".repeat(3);
        let second = "bob: noon is fine, and the usual place is fine too. ".repeat(2);
        assert_eq!(inflating.message(0xc1, &compressed(first.as_bytes()), true).unwrap(), first.as_bytes());
        let capacity = inflating.out.capacity();
        assert_eq!(inflating.message(0xc2, &compressed(second.as_bytes()), true).unwrap(), second.as_bytes());
        assert_eq!(inflating.out.capacity(), capacity, "no allocation for a shorter message");
    }

    #[test]
    fn compression_that_was_not_agreed_or_cannot_be_read_fails_the_connection() {
        let mut inflating = Inflating::default();
        let hello = compressed(b"hello");
        assert!(inflating.message(0xc1, &hello, false).unwrap_err().contains("without permessage-deflate"));
        assert!(inflating.message(0x41, &hello, true).unwrap_err().contains("fragments"));
        assert!(inflating.message(0xc9, &hello, true).unwrap_err().contains("opcode 9"));
        assert!(inflating.message(0xc1, &[0xff; 8], true).unwrap_err().contains("does not inflate"));
        // And the inflater is fine after a corrupt message.
        assert_eq!(inflating.message(0xc1, &hello, true).unwrap(), b"hello");
    }

    #[test]
    fn json_replays_are_told_from_live_messages() {
        let live = br#"{"type":"message","room":"lobby","from":"b","text":"~B~","ts":1764000000123}"#;
        let replay = br#"{"type":"message","from":"b","text":"~B~ hi","ts":1764000000123,"replay":true}"#;
        let quoted = br#"{"type":"message","from":"b","text":"say \"replay\":true","ts":1}"#;
        assert!(!is_json_replay(live) && is_json_replay(replay) && !is_json_replay(quoted));
    }
}
