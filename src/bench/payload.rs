//! What a received frame says, once it is plain: [`Inflating`] turns a compressed message
//! (RSV1 set, `permessage-deflate` without context takeover) back into the message the bench
//! looks for its token in, and [`is_json_replay`] tells a JSON-mode message from the room's
//! history (which must not count) from a live one.
//!
//! One [`Inflating`] per worker thread serves all its connections: with no context takeover
//! nothing outlives a message, and its buffers are reused, so a compressed delivery allocates
//! nothing once they have grown to the largest message.
//!
//! A server that compresses a broadcast once sends every recipient the same bytes, and
//! inflating a chat line costs a client a few microseconds, ten times what the rest of a
//! delivery costs the bench: inflated one by one, a thread's thousand copies of a message
//! would make the bench the limit of any run. So each worker keeps the last messages it
//! inflated, by their compressed bytes ([`SLOTS`] of them, direct-mapped on a hash of those
//! bytes): a frame whose compressed bytes equal a kept one (compared in full) reads
//! the kept inflation, which is what inflating it again would give. Every distinct compressed
//! message is still inflated, and checked, once per thread. `--inflate-every-frame` turns the
//! cache off, to see what a client pays per message.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::deflate::{InflateError, Inflater};

/// Largest message the bench inflates (the largest frame it accepts).
pub const MAX_MESSAGE: usize = 64 << 20;

/// RSV1: the message is compressed (RFC 7692 6.1).
const RSV1: u8 = 0x40;
const FIN: u8 = 0x80;

/// Recent inflations a worker keeps: many more than the messages in flight at once (64 for 4
/// senders with a window of 16), so that two of those rarely share a slot.
pub const SLOTS: usize = 2048;
/// Largest compressed and inflated sizes a kept inflation may have, so that the cache holds at
/// most 2,048 x 12 KiB (24 MiB) per thread whatever the server sends, and about 1.5 MiB for
/// chat lines.
const KEPT_COMPRESSED: usize = 4 << 10;
const KEPT_MESSAGE: usize = 8 << 10;

/// One kept inflation: compressed bytes and the message they inflate to.
#[derive(Debug, Default)]
struct Kept {
    compressed: Vec<u8>,
    message: Vec<u8>,
    filled: bool,
}

/// A worker's inflater, the buffer messages are inflated into, and the inflations it keeps.
#[derive(Debug, Default)]
pub struct Inflating {
    inflater: Inflater,
    out: Vec<u8>,
    /// Empty when every frame is to be inflated (`--inflate-every-frame`).
    kept: Vec<Kept>,
    /// Messages actually inflated, and those read from the kept ones.
    pub inflated: u64,
    pub reused: u64,
}

/// Where a compressed payload is kept: a multiply-and-rotate hash of all its bytes, eight at
/// a time (a few nanoseconds for a chat line; its ends alone are alike in many messages). A
/// collision only costs an inflation.
fn slot_of(compressed: &[u8]) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hash = compressed.len() as u64;
    let mut words = compressed.chunks_exact(8);
    for word in &mut words {
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word.try_into().unwrap())).wrapping_mul(K);
    }
    let mut rest = [0u8; 8];
    rest[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(rest)).wrapping_mul(K);
    (hash >> 32) as usize % SLOTS
}

impl Inflating {
    /// An inflater that keeps its recent inflations (`keep`), or inflates every frame.
    pub fn new(keep: bool) -> Self {
        let kept = if keep { (0..SLOTS).map(|_| Kept::default()).collect() } else { Vec::new() };
        Self { kept, ..Self::default() }
    }

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
        let slot = (!self.kept.is_empty()).then(|| slot_of(payload));
        if let Some(at) = slot.filter(|&at| self.kept[at].filled && self.kept[at].compressed == payload) {
            self.reused += 1;
            return Ok(&self.kept[at].message);
        }
        self.out.clear();
        self.inflater.inflate(payload, MAX_MESSAGE, &mut self.out).map_err(|e| match e {
            InflateError::TooBig => format!("a compressed message inflates past {MAX_MESSAGE} bytes"),
            InflateError::Corrupt(why) => format!("a compressed message does not inflate: {why}"),
        })?;
        self.inflated += 1;
        match slot {
            Some(at) if payload.len() <= KEPT_COMPRESSED && self.out.len() <= KEPT_MESSAGE => {
                let kept = &mut self.kept[at];
                kept.compressed.clear();
                kept.compressed.extend_from_slice(payload);
                kept.message.clear();
                kept.message.extend_from_slice(&self.out);
                kept.filled = true;
                Ok(&kept.message)
            }
            _ => Ok(&self.out),
        }
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
        let mut inflating = Inflating::new(true);
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
    fn a_message_seen_again_is_read_from_the_kept_inflation_and_only_the_same_bytes_are() {
        let lines: Vec<String> =
            (0..40).map(|i| format!("line {i}: the same words again and again, {i} times")).collect();
        let frames: Vec<Vec<u8>> = lines.iter().map(|line| compressed(line.as_bytes())).collect();
        let mut keeping = Inflating::new(true);
        let mut every = Inflating::new(false);
        // As a worker reads them: each connection's frames in turn, the same messages each time.
        for _connection in 0..5 {
            for (frame, line) in frames.iter().zip(&lines) {
                assert_eq!(keeping.message(0xc1, frame, true).unwrap(), line.as_bytes());
                assert_eq!(every.message(0xc1, frame, true).unwrap(), line.as_bytes());
            }
        }
        assert_eq!((every.inflated, every.reused), (200, 0));
        assert!(keeping.inflated < 60 && keeping.inflated + keeping.reused == 200, "{}", keeping.inflated);
        // One byte changed is another message: inflated, and refused when it does not inflate.
        let mut changed = frames[0].clone();
        *changed.last_mut().unwrap() ^= 0x55;
        let reused = keeping.reused;
        let _ = keeping.message(0xc1, &changed, true);
        assert_eq!(keeping.reused, reused, "other bytes are never read from the kept ones");
        assert_eq!(keeping.message(0xc1, &frames[0], true).unwrap(), lines[0].as_bytes());
    }

    #[test]
    fn compression_that_was_not_agreed_or_cannot_be_read_fails_the_connection() {
        let mut inflating = Inflating::new(true);
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
