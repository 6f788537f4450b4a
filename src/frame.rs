//! Encoding of server-to-client WebSocket frames, once, into a shareable buffer.
//!
//! Server frames are never masked (RFC 6455 section 5.1), so a frame is the same bytes for every
//! recipient: the header (2, 4 or 10 bytes) followed by the payload, built into one contiguous
//! [`Bytes`] that every recipient's outbox shares. tungstenite still handles everything it must
//! answer itself (pongs, close replies); this module is the broadcast fast path.

use bytes::{BufMut, Bytes, BytesMut};

/// Opcodes of the frames the server encodes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text = 0x1,
    Binary = 0x2,
    /// The keep-alive ping (payload at most 125 bytes, as for every control frame).
    Ping = 0x9,
}

/// Encodes one final, unmasked frame carrying `payload`.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Bytes {
    encode_with(0x80 | opcode as u8, payload)
}

/// Encodes one final, unmasked frame carrying a message compressed with `permessage-deflate`
/// (RSV1 set; see [`crate::deflate`]).
pub fn encode_compressed(opcode: Opcode, compressed: &[u8]) -> Bytes {
    encode_with(0x80 | 0x40 | opcode as u8, compressed)
}

fn encode_with(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(10 + len);
    buf.put_u8(first);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(short);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.put_slice(payload);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;

    /// Our encoding must be byte-identical to tungstenite's own unmasked frame formatting.
    fn tungstenite_encoding(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let frame = match opcode {
            Opcode::Text => Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true),
            Opcode::Binary => Frame::message(payload.to_vec(), OpCode::Data(Data::Binary), true),
            Opcode::Ping => Frame::ping(payload.to_vec()),
        };
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn matches_tungstenite_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for opcode in [Opcode::Text, Opcode::Binary] {
                assert_eq!(
                    encode(opcode, &payload)[..],
                    tungstenite_encoding(opcode, &payload)[..],
                    "len {len}"
                );
            }
        }
        assert_eq!(encode(Opcode::Ping, b"wschat")[..], tungstenite_encoding(Opcode::Ping, b"wschat")[..]);
    }
}
