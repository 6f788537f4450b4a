//! A message framed once for every recipient: plain, and compressed once for those that
//! negotiated `permessage-deflate`.
//!
//! With no context takeover a compressed message depends on nothing but its own bytes (and the
//! window size, which a client may limit), so the compressed frame is the same for every
//! recipient, like the plain one: each is made once, when the first recipient that needs it is
//! queued, and shared by reference count. Messages under `--deflate-min-size`, and those that
//! compression would not shrink, go plain to everyone (RSV1 says, message by message, which
//! frames are compressed).

use bytes::Bytes;

use super::codec::{Compressor, MAX_WINDOW_BITS, MIN_COMPRESSING_BITS};
use crate::frame::{self, Opcode};

/// The loop's compression: its settings and its one compressor.
#[derive(Debug, Default)]
pub struct Deflation {
    /// `--deflate-min-size`: shorter messages are not compressed.
    pub min_size: usize,
    compressor: Compressor,
    /// Messages compressed, and their bytes before and after (for the metrics).
    pub compressed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    scratch: Vec<u8>,
}

impl Deflation {
    pub fn new(min_size: usize) -> Self {
        Self { min_size, ..Self::default() }
    }
}

/// Window sizes a compressed frame is made for.
const WINDOWS: usize = (MAX_WINDOW_BITS - MIN_COMPRESSING_BITS + 1) as usize;

/// One message's frames: the plain one, and the compressed ones made so far.
#[derive(Debug)]
pub struct Outgoing {
    opcode: Opcode,
    plain: Bytes,
    /// Where the payload starts in `plain`.
    header: usize,
    /// By window size: the frame for clients that negotiated it, once made (the plain frame
    /// when compressing did not pay).
    compressed: [Option<Bytes>; WINDOWS],
}

impl Outgoing {
    pub fn new(opcode: Opcode, payload: &[u8]) -> Self {
        let plain = frame::encode(opcode, payload);
        let header = plain.len() - payload.len();
        Self { opcode, plain, header, compressed: Default::default() }
    }

    /// The plain frame (for clients that did not negotiate the extension).
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The frame for a client that negotiated a window of `window_bits` (0: no extension).
    pub fn for_window(&mut self, window_bits: u8, deflation: &mut Deflation) -> &Bytes {
        let payload_len = self.plain.len() - self.header;
        if window_bits < MIN_COMPRESSING_BITS || payload_len < deflation.min_size.max(1) {
            return &self.plain;
        }
        let slot = usize::from(window_bits.min(MAX_WINDOW_BITS) - MIN_COMPRESSING_BITS);
        let (plain, header, opcode) = (&self.plain, self.header, self.opcode);
        self.compressed[slot].get_or_insert_with(|| {
            let scratch = &mut deflation.scratch;
            scratch.clear();
            let payload = &plain[header..];
            if deflation.compressor.compress(payload, window_bits, scratch) && scratch.len() < payload.len() {
                deflation.compressed += 1;
                deflation.bytes_in += payload.len() as u64;
                deflation.bytes_out += scratch.len() as u64;
                frame::encode_compressed(opcode, scratch)
            } else {
                plain.clone()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Inflater;

    fn payload_of(frame: &[u8]) -> (u8, &[u8]) {
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), at + len);
        (frame[0], &frame[at..])
    }

    #[test]
    fn one_compression_serves_every_recipient_of_a_window() {
        let text = "bob: shall we meet at the usual place at the usual time, or somewhere new? ".repeat(4);
        let mut deflation = Deflation::new(128);
        let mut out = Outgoing::new(Opcode::Text, text.as_bytes());
        let first = out.for_window(15, &mut deflation).clone();
        let second = out.for_window(15, &mut deflation).clone();
        assert_eq!(deflation.compressed, 1);
        assert_eq!(first.as_ptr(), second.as_ptr(), "shared, not copied");
        let (head, compressed) = payload_of(&first);
        assert_eq!(head, 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        assert!(compressed.len() < text.len() / 2);
        let mut inflated = Vec::new();
        Inflater::default().inflate(compressed, text.len(), &mut inflated).unwrap();
        assert_eq!(inflated, text.as_bytes());
        // Another window is another compression; no extension, or 8 bits, the plain frame.
        out.for_window(10, &mut deflation);
        assert_eq!(deflation.compressed, 2);
        assert_eq!(out.for_window(0, &mut deflation).clone(), out.plain().clone());
        assert_eq!(out.for_window(8, &mut deflation).clone(), out.plain().clone());
    }

    #[test]
    fn short_and_incompressible_messages_go_plain() {
        let mut deflation = Deflation::new(128);
        let mut short = Outgoing::new(Opcode::Text, "a".repeat(127).as_bytes());
        assert_eq!(short.for_window(15, &mut deflation).clone(), short.plain().clone());
        let noise = crate::deflate::codec::tests::noise(4000);
        let mut binary = Outgoing::new(Opcode::Binary, &noise);
        assert_eq!(binary.for_window(15, &mut deflation).clone(), binary.plain().clone());
        assert_eq!(deflation.compressed, 0);
    }
}
