//! The bench's own part of the wire, on top of [`crate::wire`]: the token each benchmark
//! message carries, and an allocation-free view of the complete frames in a read buffer.
//!
//! A token is `~B` + sender (8 hex digits) + sequence number (16) + send time in nanoseconds
//! since the run's start (16) + `~`: fixed width, so receivers find and parse it anywhere inside
//! a text frame (wschat prefixes `NICK: `; plain broadcast servers send it as is) without
//! allocating.

/// Length of an encoded token.
pub const TOKEN_LEN: usize = 43;
const TOKEN_START: &[u8; 2] = b"~B";

/// What a token says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub sender: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Token {
    /// Appends the token to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(TOKEN_START);
        push_hex(out, u64::from(self.sender), 8);
        push_hex(out, self.seq, 16);
        push_hex(out, self.sent_ns, 16);
        out.push(b'~');
    }

    /// Finds and parses the first token inside `payload`: `memchr` for each `~`, so a
    /// wschat line (`NICK: ` before the token) costs one vectorised scan of a few bytes.
    pub fn find(payload: &[u8]) -> Option<Token> {
        memchr::memchr_iter(TOKEN_START[0], payload).find_map(|start| {
            let candidate = payload.get(start..start + TOKEN_LEN)?;
            (candidate[1] == TOKEN_START[1]).then(|| Self::parse(candidate)).flatten()
        })
    }

    fn parse(bytes: &[u8]) -> Option<Token> {
        if bytes[TOKEN_LEN - 1] != b'~' {
            return None;
        }
        let hex8 = |at: usize| bytes.get(at..at + 8)?.try_into().ok().and_then(parse_hex8);
        let hex16 = |at: usize| Some(u64::from(hex8(at)?) << 32 | u64::from(hex8(at + 8)?));
        Some(Token { sender: hex8(2)?, seq: hex16(10)?, sent_ns: hex16(26)? })
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Eight lower-case hex digits as a number, all eight bytes at once (SWAR), or None if any
/// byte is not a hex digit. A receiver parses a token per delivery; digit by digit, this was a
/// fifth of the bench's CPU.
fn parse_hex8(digits: [u8; 8]) -> Option<u32> {
    let v = u64::from_be_bytes(digits);
    // Bytes in `lo..=hi` get their high bit set (every byte is below 0x80, so no add carries
    // into its neighbour).
    let in_range = |lo: u8, hi: u8| {
        let at_least_lo = v.wrapping_add(ONES * u64::from(0x80 - lo));
        let above_hi = v.wrapping_add(ONES * u64::from(0x7f - hi));
        at_least_lo & !above_hi & HIGH_BITS
    };
    if v & HIGH_BITS != 0 || in_range(b'0', b'9') | in_range(b'a', b'f') != HIGH_BITS {
        return None;
    }
    // '0'..='9' keep their low nibble; 'a'..='f' (bit 6 set) add 9 to theirs.
    let nibbles = (v & (ONES * 0x0f)) + ((v >> 6) & ONES) * 9;
    let bytes = (nibbles | nibbles >> 4) & 0x00ff_00ff_00ff_00ff;
    let pairs = (bytes | bytes >> 8) & 0x0000_ffff_0000_ffff;
    Some(((pairs | pairs >> 16) & 0xffff_ffff) as u32)
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

/// A complete server frame found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub opcode: u8,
    /// FIN, the reserved bits (RSV1: compressed) and the opcode.
    pub first_byte: u8,
    /// Payload position within the buffer that was parsed.
    pub payload: (usize, usize),
    /// Bytes the whole frame occupies.
    pub len: usize,
}

/// Parses the first frame in `buf` if it is complete. Server frames are unmasked; a masked one
/// is parsed anyway (the bench measures, it does not police).
pub fn parse_frame(buf: &[u8]) -> Option<FrameRef> {
    let header = crate::wire::parse_header(buf)?;
    let len = header.frame_len()?;
    (buf.len() >= len).then_some(FrameRef {
        opcode: header.opcode(),
        first_byte: header.first_byte,
        payload: (header.payload_start, len),
        len,
    })
}

/// Bytes needed for the frame at the front of `buf`, once its header is complete.
pub fn frame_len_hint(buf: &[u8]) -> Option<usize> {
    crate::wire::parse_header(buf)?.frame_len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_found_inside_a_prefixed_message() {
        let token = Token { sender: 0xabc, seq: 123_456_789, sent_ns: 42 };
        let mut text = b"bench-7: ".to_vec();
        token.write(&mut text);
        text.extend_from_slice(b"xxxxxxxx");
        assert_eq!(text.len(), 9 + TOKEN_LEN + 8);
        assert_eq!(Token::find(&text), Some(token));
        assert_eq!(Token::find(b"*** bench-7 joined lobby"), None);
        assert_eq!(Token::find(b"~B~Bnot a token"), None);
    }

    #[test]
    fn hex_digits_parse_eight_at_a_time_and_anything_else_is_refused() {
        for value in [0u32, 1, 0x9a, 0xdead_beef, 0x0123_4567, 0x89ab_cdef, u32::MAX] {
            let text = format!("{value:08x}");
            assert_eq!(parse_hex8(text.as_bytes().try_into().unwrap()), Some(value), "{text}");
        }
        for bad in [*b"0000000g", *b"A0000000", *b"0000/000", *b"000:0000", *b"`0000000", *b"0000 000"] {
            assert_eq!(parse_hex8(bad), None, "{}", String::from_utf8_lossy(&bad));
        }
        assert_eq!(parse_hex8([b'0', b'0', b'0', 0xc3, b'0', b'0', b'0', b'0']), None);
    }

    #[test]
    fn client_frames_parse_back() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let out = crate::wire::client_frame(0x81, &payload, Some([1, 2, 3, 4]));
            let frame = parse_frame(&out).expect("complete");
            assert_eq!((frame.opcode, frame.first_byte, frame.len), (1, 0x81, out.len()));
            assert_eq!(frame.payload.1 - frame.payload.0, len);
            assert_eq!(frame_len_hint(&out), Some(out.len()));
            assert_eq!(parse_frame(&out[..out.len() - 1]), None, "incomplete");
        }
    }
}
