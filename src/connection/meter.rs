//! Counting a client's frames as their bytes arrive, before tungstenite parses them.
//!
//! tungstenite's `read()` parses frames until it has a whole message, so frames that never make
//! one (a stream of empty continuation frames, say) would keep it busy for as long as the socket
//! has bytes, and control frames are answered without the caller seeing them counted. The
//! transport therefore walks the frame headers in the bytes it hands tungstenite: that gives
//! the number of frames in each loop turn (for the per-turn budget and the rate limit) and what
//! the message being received in fragments has cost so far ([`FrameMeter::fragments_charge`]).
//! It reads nothing but headers: payloads are skipped by length, so the cost is a few
//! instructions per frame. Malformed headers are tungstenite's to refuse; the meter only has to
//! stay in step with valid ones.

/// Bytes every fragment of a message is charged at least, against `--max-message-size`.
///
/// RFC 6455 allows a message in any number of fragments, so they are bounded by what they cost
/// rather than by a count: a fragment costs a header and a parse however small its payload. At
/// 64 bytes a message in fragments of 64 bytes or more is charged exactly its size (it passes
/// whenever its size is allowed: the Autobahn cases of 4 MiB in 64-byte fragments, under a
/// 16 MiB limit), while a flood of empty continuations reaches the default 64 KiB limit after
/// 1,024 of them and ends in 1009.
pub const FRAGMENT_MIN_CHARGE: u32 = 64;

// Which part of a frame the next byte belongs to, in one byte (every idle connection carries
// a meter): the first header byte, the second, extended length bytes still to come
// (LENGTH + n), masking key bytes still to come (KEY + n), or payload.
const FIRST: u8 = 0;
const SECOND: u8 = 1;
const LENGTH: u8 = 2; // ..= LENGTH + 8
const KEY: u8 = 16; // ..= KEY + 4
const PAYLOAD: u8 = 32;

/// The charge of a fragmented message that went over its limit (which is below it).
const OVER_LIMIT: u32 = u32::MAX;

// What the meter knows of the frame whose header it is reading, in one byte.
/// The frame's payload is masked.
const MASKED: u8 = 1;
/// The frame is a fragment of a message that is not yet complete (charged once its length is
/// known).
const FRAGMENT: u8 = 2;

/// The meter's place in the stream and what it counted.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeter {
    at: u8,
    /// [`MASKED`] and [`FRAGMENT`], for the frame whose header is being read.
    frame: u8,
    /// Frames whose first byte was seen since [`take_frames`](Self::take_frames) (saturating:
    /// only a read buffer configured in megabytes holds more between two takes).
    frames: u16,
    /// Payload still to skip. A length past `u32` is saturated: tungstenite refuses such a
    /// frame (over `--max-message-size`) before the meter could miscount.
    payload_left: u32,
    /// Bytes charged to the message in progress, fragment by fragment (0: no fragmented
    /// message under way).
    charged: u32,
}

impl Default for FrameMeter {
    fn default() -> Self {
        Self { at: FIRST, frame: 0, frames: 0, payload_left: 0, charged: 0 }
    }
}

impl FrameMeter {
    /// Accounts for the next bytes of the stream, a fragmented message's charge against
    /// `limit` (see [`Self::over_limit`]); returns how many frames began in them.
    pub fn feed(&mut self, mut bytes: &[u8], limit: u32) -> u32 {
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
            self.header_byte(byte, limit);
            bytes = rest;
        }
        self.frames = self.frames.saturating_add(u16::try_from(began).unwrap_or(u16::MAX));
        began
    }

    fn header_byte(&mut self, byte: u8, limit: u32) {
        self.at = match self.at {
            FIRST => {
                let (fin, opcode) = (byte & 0x80 != 0, byte & 0x0f);
                // A whole message, or the last fragment, ends what was charged (tungstenite
                // bounds the final size itself); a new fragmented message starts afresh;
                // control frames may sit between fragments and are not charged to them.
                let data = opcode & 0x08 == 0;
                // Once over the limit the charge stays over, final fragment or not, so the
                // message can be refused however many of its frames one read brought.
                if data && (fin || opcode != 0) && !self.over_limit() {
                    self.charged = 0;
                }
                self.frame = if data && !fin { FRAGMENT } else { 0 };
                SECOND
            }
            SECOND => {
                if byte & 0x80 != 0 {
                    self.frame |= MASKED;
                }
                self.payload_left = 0;
                match byte & 0x7f {
                    126 => LENGTH + 2,
                    127 => LENGTH + 8,
                    n => {
                        self.payload_left = u32::from(n);
                        self.after_length(limit)
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
                    self.after_length(limit)
                }
            }
        };
    }

    /// The frame's length is known: a fragment is charged for it.
    fn after_length(&mut self, limit: u32) -> u8 {
        if self.frame & FRAGMENT != 0 && !self.over_limit() {
            let charged = self.charged.saturating_add(self.payload_left.max(FRAGMENT_MIN_CHARGE));
            self.charged = if charged > limit { OVER_LIMIT } else { charged };
        }
        if self.frame & MASKED != 0 {
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
        self.at == FIRST && self.charged == 0
    }

    /// What the fragmented message in progress has cost so far: the sum over its fragments of
    /// each one's length, or [`FRAGMENT_MIN_CHARGE`] where that is more.
    #[cfg(test)]
    fn fragments_charge(&self) -> u32 {
        self.charged
    }

    /// A fragmented message's charge went over the limit `feed` was given: it is refused
    /// (1009), and the charge stays over even if its last fragment followed in the same read.
    pub fn over_limit(&self) -> bool {
        self.charged == OVER_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMIT: u32 = u32::MAX - 1;

    fn frame(first: u8, payload_len: usize, masked: bool) -> Vec<u8> {
        // Payload bytes that look like headers, to catch a meter that loses its place.
        let payload = vec![0x81; payload_len];
        crate::wire::client_frame(first, &payload, masked.then_some([1, 2, 3, 4]))
    }

    #[test]
    fn counts_frames_of_every_length_form_fed_in_any_pieces() {
        assert_eq!(FrameMeter::default().feed(&frame(0x81, 1, true), NO_LIMIT), 1);
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
                meter.feed(chunk, NO_LIMIT);
            }
            assert_eq!(meter.take_frames(), 5, "pieces of {piece}");
            assert_eq!(meter.at, FIRST);
        }
    }

    #[test]
    fn charges_each_fragment_its_length_or_the_minimum() {
        let mut meter = FrameMeter::default();
        meter.feed(&frame(0x01, 300, true), NO_LIMIT); // text, not final: its length
        assert_eq!(meter.fragments_charge(), 300);
        for _ in 0..10 {
            meter.feed(&frame(0x00, 0, true), NO_LIMIT); // empty continuations: the minimum each
        }
        assert_eq!(meter.fragments_charge(), 300 + 10 * FRAGMENT_MIN_CHARGE);
        meter.feed(&frame(0x89, 100, true), NO_LIMIT); // a ping between fragments is not charged
        meter.feed(&frame(0x00, 70_000, false), NO_LIMIT); // a 16-bit length, in pieces
        assert_eq!(meter.fragments_charge(), 300 + 10 * FRAGMENT_MIN_CHARGE + 70_000);
        assert!(!meter.between_messages());
        meter.feed(&frame(0x80, 5, true), NO_LIMIT); // the final fragment ends the message
        assert_eq!(meter.fragments_charge(), 0);
        assert!(meter.between_messages());
        meter.feed(&frame(0x82, 5, true), NO_LIMIT); // a whole message is never charged
        assert_eq!(meter.fragments_charge(), 0);
        meter.feed(&frame(0x02, 1, true), NO_LIMIT);
        assert_eq!(meter.fragments_charge(), FRAGMENT_MIN_CHARGE);
        meter.feed(&frame(0x01, 1, true), NO_LIMIT); // a new message (a protocol error) starts afresh
        assert_eq!(meter.fragments_charge(), FRAGMENT_MIN_CHARGE);
    }

    #[test]
    fn a_charge_is_made_whatever_pieces_the_header_comes_in() {
        let stream: Vec<u8> =
            [frame(0x01, 200, true), frame(0x00, 3, false), frame(0x00, 70_000, true)].concat();
        for piece in [1, 2, 3, 5, 7, 1000, stream.len()] {
            let mut meter = FrameMeter::default();
            for chunk in stream.chunks(piece) {
                meter.feed(chunk, NO_LIMIT);
            }
            assert_eq!(meter.fragments_charge(), 200 + FRAGMENT_MIN_CHARGE + 70_000, "pieces of {piece}");
        }
    }

    #[test]
    fn a_charge_over_the_limit_stays_over_past_the_last_fragment() {
        let mut meter = FrameMeter::default();
        let limit = 10 * FRAGMENT_MIN_CHARGE;
        // The first fragment, then empty ones: the eleventh goes over, and the last fragment,
        // in the same feed, does not clear it.
        let stream: Vec<u8> = std::iter::once(frame(0x01, 1, true))
            .chain((0..10).map(|_| frame(0x00, 0, true)))
            .chain(std::iter::once(frame(0x80, 1, true)))
            .collect::<Vec<_>>()
            .concat();
        meter.feed(&stream, limit);
        assert!(meter.over_limit());
        assert!(!meter.between_messages() || meter.over_limit());
        meter.feed(&frame(0x81, 1, true), limit);
        assert!(meter.over_limit(), "nothing after it clears it either");
        // Just under the limit: the last fragment ends the message, charge and all.
        let mut meter = FrameMeter::default();
        let stream: Vec<u8> = std::iter::once(frame(0x01, 1, true))
            .chain((0..9).map(|_| frame(0x00, 0, true)))
            .chain(std::iter::once(frame(0x80, 1, true)))
            .collect::<Vec<_>>()
            .concat();
        meter.feed(&stream, limit + FRAGMENT_MIN_CHARGE);
        assert!(!meter.over_limit() && meter.between_messages());
    }
}
