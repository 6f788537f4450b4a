//! The bench client's side of the wire: the upgrade request, masked client frames, an
//! allocation-free server frame parser, and the token each benchmark message carries.
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

/// The HTTP upgrade request for `host` and `path`.
pub fn upgrade_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Appends one masked, final client frame (clients must mask, RFC 6455 5.3).
pub fn push_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
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

/// Decodes the header at the front of `buf`: opcode, where the payload starts, and its length.
fn header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut start): (u64, usize) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    if b1 & 0x80 != 0 {
        start += 4; // masking key
    }
    Some((b0 & 0x0f, start, usize::try_from(len).ok()?))
}

/// Parses the first frame in `buf` if it is complete. Server frames are unmasked; a masked one
/// is parsed anyway (the bench measures, it does not police).
pub fn parse_frame(buf: &[u8]) -> Option<FrameRef> {
    let (opcode, start, len) = header(buf)?;
    let end = start.checked_add(len)?;
    (buf.len() >= end).then_some(FrameRef { opcode, payload: (start, end), len: end })
}

/// Bytes needed for the frame at the front of `buf`, once its header is complete.
pub fn frame_len_hint(buf: &[u8]) -> Option<usize> {
    let (_, start, len) = header(buf)?;
    start.checked_add(len)
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
            let mut out = Vec::new();
            push_client_frame(&mut out, 1, &payload, [1, 2, 3, 4]);
            let frame = parse_frame(&out).expect("complete");
            assert_eq!((frame.opcode, frame.len), (1, out.len()));
            assert_eq!(frame.payload.1 - frame.payload.0, len);
            assert_eq!(frame_len_hint(&out), Some(out.len()));
            assert_eq!(parse_frame(&out[..out.len() - 1]), None, "incomplete");
        }
    }

    #[test]
    fn server_frames_from_wschat_parse() {
        let encoded = crate::frame::encode(crate::frame::Opcode::Text, b"alice: hi");
        let frame = parse_frame(&encoded).unwrap();
        assert_eq!(&encoded[frame.payload.0..frame.payload.1], b"alice: hi");
    }
}
