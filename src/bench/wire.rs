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

    /// Finds and parses the first token inside `payload`.
    pub fn find(payload: &[u8]) -> Option<Token> {
        let mut from = 0;
        while let Some(at) = payload[from..].windows(2).position(|w| w == TOKEN_START) {
            let start = from + at;
            if let Some(token) = payload.get(start..start + TOKEN_LEN).and_then(Self::parse) {
                return Some(token);
            }
            from = start + 1;
        }
        None
    }

    fn parse(bytes: &[u8]) -> Option<Token> {
        if bytes[TOKEN_LEN - 1] != b'~' {
            return None;
        }
        Some(Token {
            sender: u32::try_from(parse_hex(&bytes[2..10])?).ok()?,
            seq: parse_hex(&bytes[10..26])?,
            sent_ns: parse_hex(&bytes[26..42])?,
        })
    }
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(v))
    })
}

/// A complete server frame found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    pub opcode: u8,
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
    fn client_frames_parse_back() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let out = crate::wire::client_frame(0x81, &payload, Some([1, 2, 3, 4]));
            let frame = parse_frame(&out).expect("complete");
            assert_eq!((frame.opcode, frame.len), (1, out.len()));
            assert_eq!(frame.payload.1 - frame.payload.0, len);
            assert_eq!(frame_len_hint(&out), Some(out.len()));
            assert_eq!(parse_frame(&out[..out.len() - 1]), None, "incomplete");
        }
    }
}
