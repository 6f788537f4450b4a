//! Counting a client's frames as their bytes arrive, before tungstenite parses them.
//!
//! tungstenite's `read()` parses frames until it has a whole message, so frames that never make
//! one (a stream of empty continuation frames, say) would keep it busy for as long as the socket
//! has bytes, and control frames are answered without the caller seeing them counted. The
//! transport therefore walks the frame headers in the bytes it hands tungstenite: that gives
//! the number of frames in each loop turn (for the per-turn budget and the rate limit) and the
//! number of fragments in the message being received (capped). It reads nothing but headers:
//! payloads are skipped by length, so the cost is a few instructions per frame. Malformed
//! headers are tungstenite's to refuse; the meter only has to stay in step with valid ones.

/// Most fragments one message may arrive in; past it the client is closed (1009). A 16 MiB
/// message in 64 KiB frames is 256 fragments; nothing reasonable needs more.
pub const MAX_FRAGMENTS: u16 = 1024;

// Which part of a frame the next byte belongs to, in one byte (every idle connection carries
// a meter): the first header byte, the second, extended length bytes still to come
// (LENGTH + n), masking key bytes still to come (KEY + n), or payload.
const FIRST: u8 = 0;
const SECOND: u8 = 1;
const LENGTH: u8 = 2; // ..= LENGTH + 8
const KEY: u8 = 16; // ..= KEY + 4
const PAYLOAD: u8 = 32;

/// The meter's place in the stream and what it counted.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeter {
    at: u8,
    masked: bool,
    /// Fragments of the message in progress (0: no fragmented message under way).
    fragments: u16,
    /// Frames whose first byte was seen since [`take_frames`](Self::take_frames) (saturating:
    /// only a read buffer configured in megabytes holds more between two takes).
    frames: u16,
    /// Payload still to skip. A length past `u32` is saturated: tungstenite refuses such a
    /// frame (over `--max-message-size`) before the meter could miscount.
    payload_left: u32,
}

impl Default for FrameMeter {
    fn default() -> Self {
        Self { at: FIRST, masked: false, fragments: 0, frames: 0, payload_left: 0 }
    }
}

impl FrameMeter {
    /// Accounts for the next bytes of the stream; returns how many frames began in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u32 {
        let mut began = 0;
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.at == PAYLOAD {
                let skip = (self.payload_left as usize).min(bytes.len());
                self.payload_left -= skip as u32;
                bytes = &bytes[skip..];
                if self.payload_left == 0 {
                    self.at = FIRST;
                }
                continue;
            }
            began += u32::from(self.at == FIRST);
            self.header_byte(byte);
            bytes = rest;
        }
        self.frames = self.frames.saturating_add(u16::try_from(began).unwrap_or(u16::MAX));
        began
    }

    fn header_byte(&mut self, byte: u8) {
        self.at = match self.at {
            FIRST => {
                let (fin, opcode) = (byte & 0x80 != 0, byte & 0x0f);
                self.fragments = match (opcode, fin) {
                    (0..=2, true) => 0,
                    (0, false) => self.fragments.saturating_add(1),
                    (1 | 2, false) => 1,
                    _ => self.fragments, // control frames may sit between fragments
                };
                SECOND
            }
            SECOND => {
                self.masked = byte & 0x80 != 0;
                self.payload_left = 0;
                match byte & 0x7f {
                    126 => LENGTH + 2,
                    127 => LENGTH + 8,
                    n => {
                        self.payload_left = u32::from(n);
                        self.after_length()
                    }
                }
            }
            KEY..PAYLOAD => {
                if self.at > KEY + 1 {
                    self.at - 1
                } else {
                    self.payload()
                }
            }
            length => {
                self.payload_left =
                    self.payload_left.checked_mul(256).map_or(u32::MAX, |v| v | u32::from(byte));
                if length > LENGTH + 1 {
                    length - 1
                } else {
                    self.after_length()
                }
            }
        };
    }

    fn after_length(&self) -> u8 {
        if self.masked {
            KEY + 4
        } else {
            self.payload()
        }
    }

    fn payload(&self) -> u8 {
        if self.payload_left == 0 {
            FIRST
        } else {
            PAYLOAD
        }
    }

    /// Frames seen since the last call.
    pub fn take_frames(&mut self) -> u32 {
        u32::from(std::mem::take(&mut self.frames))
    }

    /// The bytes fed so far end with a whole frame, and that frame ended its message (or was a
    /// control frame outside one).
    pub fn between_messages(&self) -> bool {
        self.at == FIRST && self.fragments == 0
    }

    /// The message in progress has come in more than [`MAX_FRAGMENTS`] fragments.
    pub fn too_many_fragments(&self) -> bool {
        self.fragments > MAX_FRAGMENTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, payload_len: usize, masked: bool) -> Vec<u8> {
        // Payload bytes that look like headers, to catch a meter that loses its place.
        let payload = vec![0x81; payload_len];
        crate::wire::client_frame(first, &payload, masked.then_some([1, 2, 3, 4]))
    }

    #[test]
    fn counts_frames_of_every_length_form_fed_in_any_pieces() {
        assert_eq!(FrameMeter::default().feed(&frame(0x81, 1, true)), 1);
        let stream: Vec<u8> = [
            frame(0x81, 5, true),
            frame(0x89, 0, true),
            frame(0x82, 300, true),
            frame(0x82, 70_000, false),
            frame(0x81, 0, true),
        ]
        .concat();
        for piece in [1, 2, 3, 7, 1000, stream.len()] {
            let mut meter = FrameMeter::default();
            for chunk in stream.chunks(piece) {
                meter.feed(chunk);
            }
            assert_eq!(meter.take_frames(), 5, "pieces of {piece}");
            assert_eq!(meter.at, FIRST);
        }
    }

    #[test]
    fn counts_fragments_of_the_message_in_progress() {
        let mut meter = FrameMeter::default();
        meter.feed(&frame(0x01, 3, true)); // text, not final
        for _ in 0..MAX_FRAGMENTS - 1 {
            meter.feed(&frame(0x00, 0, true));
        }
        meter.feed(&frame(0x89, 0, true)); // a ping between fragments
        assert!(!meter.too_many_fragments());
        meter.feed(&frame(0x00, 0, true));
        assert!(meter.too_many_fragments());
        meter.feed(&frame(0x80, 0, true)); // the final fragment ends the message
        assert!(!meter.too_many_fragments());
    }
}
