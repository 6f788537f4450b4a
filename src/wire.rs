//! The client's side of the WebSocket wire, written once for everything that plays a client:
//! the load generator, the simulation, the integration tests and the conformance suite.
//!
//! - [`UpgradeRequest`] builds the HTTP upgrade request (RFC 6455 4.1), by default with the
//!   RFC's sample key [`SAMPLE_KEY`]; tests vary its headers to build bad requests.
//! - [`push_client_frame`] / [`client_frame`] encode one client frame with any first byte
//!   (FIN, reserved bits, opcode), so tests can also send what a well-behaved client would not;
//!   clients mask their frames (RFC 6455 5.3), tests may choose not to.
//! - [`parse_header`] reads the header at the front of a buffer of server frames, without
//!   copying: where the payload starts and how long it is.
//!
//! The server's own side is elsewhere: tungstenite reads client frames, [`crate::frame`]
//! encodes server frames.

use std::fmt;

/// The key of RFC 6455's sample handshake (section 1.3); any 16 bytes in base64 would do.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An HTTP/1.1 WebSocket upgrade request; `Display` writes it out.
#[derive(Debug, Clone)]
pub struct UpgradeRequest<'a> {
    host: &'a str,
    path: &'a str,
    key: &'a str,
    version: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> UpgradeRequest<'a> {
    /// `GET path` on `host`, version 13, with the sample key.
    pub fn new(host: &'a str, path: &'a str) -> Self {
        Self { host, path, key: SAMPLE_KEY, version: "13", headers: Vec::new() }
    }

    /// Another `Sec-WebSocket-Key`.
    pub fn key(mut self, key: &'a str) -> Self {
        self.key = key;
        self
    }

    /// Another `Sec-WebSocket-Version`.
    pub fn version(mut self, version: &'a str) -> Self {
        self.version = version;
        self
    }

    /// One more header line (after the standard ones).
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for UpgradeRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: {}\r\n",
            self.path, self.host, self.key, self.version
        )?;
        for (name, value) in &self.headers {
            write!(f, "{name}: {value}\r\n")?;
        }
        f.write_str("\r\n")
    }
}

/// Appends one frame: `first_byte` is FIN, the reserved bits and the opcode; the payload is
/// masked with `mask` when there is one.
pub fn push_client_frame(out: &mut Vec<u8>, first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    push_client_header(out, first_byte, payload.len(), mask);
    match mask {
        Some(key) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3])),
        None => out.extend_from_slice(payload),
    }
}

/// Appends the header of a frame of `len` bytes (its masking key included, when there is one):
/// what [`push_client_frame`] writes before the payload.
pub fn push_client_header(out: &mut Vec<u8>, first_byte: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(first_byte);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// One frame, as [`push_client_frame`] encodes it.
pub fn client_frame(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    push_client_frame(&mut out, first_byte, payload, mask);
    out
}

/// A frame header as found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN, the reserved bits and the opcode.
    pub first_byte: u8,
    pub masked: bool,
    /// Where the payload starts (after the length and any masking key).
    pub payload_start: usize,
    pub payload_len: u64,
}

impl FrameHeader {
    pub fn opcode(&self) -> u8 {
        self.first_byte & 0x0f
    }

    pub fn fin(&self) -> bool {
        self.first_byte & 0x80 != 0
    }

    /// Bytes the whole frame occupies, if that fits in memory at all.
    pub fn frame_len(&self) -> Option<usize> {
        self.payload_start.checked_add(usize::try_from(self.payload_len).ok()?)
    }
}

/// How long a header is, from its second byte (the length form and the mask bit): what a
/// reader on a blocking stream reads after the first two bytes.
pub fn header_len(second_byte: u8) -> usize {
    let length = match second_byte & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + length + if second_byte & 0x80 != 0 { 4 } else { 0 }
}

/// The header at the front of `buf`, once all of it has arrived.
pub fn parse_header(buf: &[u8]) -> Option<FrameHeader> {
    let (&first_byte, &second) = (buf.first()?, buf.get(1)?);
    let (payload_len, mut payload_start) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let masked = second & 0x80 != 0;
    if masked {
        payload_start += 4;
    }
    Some(FrameHeader { first_byte, masked, payload_start, payload_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_every_length_form_parse_back() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            for mask in [None, Some([1, 2, 3, 4])] {
                let frame = client_frame(0x81, &payload, mask);
                let header = parse_header(&frame).expect("complete header");
                assert_eq!((header.opcode(), header.fin(), header.masked), (1, true, mask.is_some()));
                assert_eq!(header.payload_len, len as u64);
                assert_eq!(header.frame_len(), Some(frame.len()));
                assert_eq!(header_len(frame[1]), header.payload_start);
                let start = header.payload_start;
                let unmasked: Vec<u8> = frame[start..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask.map_or(0, |k| k[i & 3]))
                    .collect();
                assert_eq!(unmasked, payload);
            }
        }
        assert_eq!(parse_header(&[0x81]), None);
        assert_eq!(parse_header(&[0x81, 126, 0]), None);
    }

    #[test]
    fn server_frames_from_wschat_parse() {
        let encoded = crate::frame::encode(crate::frame::Opcode::Text, b"alice: hi");
        let header = parse_header(&encoded).unwrap();
        assert_eq!(&encoded[header.payload_start..], b"alice: hi");
    }

    #[test]
    fn the_upgrade_request_is_the_rfc_sample_with_extra_headers() {
        let request =
            UpgradeRequest::new("server.example.com", "/chat").header("Origin", "http://example.com");
        assert_eq!(
            request.to_string(),
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://example.com\r\n\r\n"
        );
        assert!(UpgradeRequest::new("h", "/").version("8").to_string().contains("Version: 8\r\n"));
    }
}
