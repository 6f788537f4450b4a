//! permessage-deflate's way in: compressed messages inflated between the socket and tungstenite.
//!
//! tungstenite refuses every frame with RSV1 set, and no maintained release implements RFC 7692,
//! so for a connection that negotiated the extension the bytes pass through [`Inflating`] on
//! their way from the [`Transport`] to tungstenite. Plain frames pass as they are (their headers
//! read to stay in step). A compressed message (RSV1 on its first frame) is held back: its
//! frames' payloads are unmasked and collected until the last, then inflated at once by the
//! loop's one [`Inflater`] and handed to tungstenite as one final frame with RSV1 clear and a
//! zero mask (masked, as a client's frame must be; XOR with zero leaves the bytes as they are).
//! Control frames between its fragments pass at once, as they would have.
//!
//! Bounds: the compressed bytes are metered by the transport like any others (a fragmented
//! message is charged at least 64 bytes a fragment against `--max-message-size`), and are
//! refused past that limit too; inflating stops at the limit (1009) without inflating the rest;
//! inflated bytes are charged to the turn's read budget (past it, to the next turns'); and a
//! read that completes a compressed
//! message stops there, what it read beyond held for the next read, so at most one inflated
//! message waits at a time. The state lives with tungstenite's context, so a parked connection
//! holds none of it.

use std::io::{self, Read, Write};

use tungstenite::protocol::frame::coding::CloseCode;

use super::transport::{Stream, Transport};
use crate::deflate::{InflateError, Inflater};
use crate::wire;

/// Why the way in refused a client's bytes: the close code and reason to fail it with.
pub type Refusal = (CloseCode, String);

/// A connection's place in its compressed input (empty, with nothing allocated, between
/// messages).
#[derive(Debug, Default)]
pub struct InflateState {
    /// The header of the frame being read, `have` bytes of it so far.
    header: [u8; 14],
    have: u8,
    /// The rest of the current frame, once its header is read.
    frame: Frame,
    /// The opcode of the compressed message being collected (text or binary), if one is.
    message: Option<u8>,
    /// Its payload so far, unmasked.
    compressed: Vec<u8>,
    /// Bytes for tungstenite, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// Bytes read from the socket and not yet looked at.
    held: Vec<u8>,
    /// A refusal found in bytes after frames still waiting in `out`: reported once they are
    /// read (a message before a bad frame is delivered, as without the extension).
    pending: Option<Refusal>,
    /// A refusal not yet reported to the connection.
    refusal: Option<Refusal>,
}

#[derive(Debug, Default, Clone, Copy)]
enum Frame {
    /// Reading a header.
    #[default]
    Header,
    /// A plain frame's payload, passed through.
    Plain { left: u64 },
    /// A compressed message's frame, collected; `fin` if it is the last.
    Compressed { left: u64, mask: [u8; 4], at: u8, fin: bool },
}

impl InflateState {
    /// Nothing is held: a fresh state would do as well (the connection may park).
    pub fn is_idle(&self) -> bool {
        self.message.is_none()
            && self.have == 0
            && matches!(self.frame, Frame::Header)
            && self.out_at >= self.out.len()
            && self.held.is_empty()
            && self.pending.is_none()
    }

    /// Why the input was refused, once.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    /// Copies what waits for tungstenite into `buf`; `None` if nothing does.
    fn serve(&mut self, buf: &mut [u8]) -> Option<usize> {
        let waiting = &self.out[self.out_at.min(self.out.len())..];
        if waiting.is_empty() {
            if self.out.capacity() > 0 {
                // An inflated message may have been large: its buffer does not stay.
                self.out = Vec::new();
                self.out_at = 0;
            }
            return None;
        }
        let n = waiting.len().min(buf.len());
        buf[..n].copy_from_slice(&waiting[..n]);
        self.out_at += n;
        Some(n)
    }

    /// Looks at the next bytes from the client, appending what tungstenite should see to
    /// `out`; stops after a compressed message is inflated. Returns the bytes used, and the
    /// bytes inflated (to charge to the turn).
    fn process(
        &mut self,
        input: &[u8],
        inflater: &mut Inflater,
        limit: usize,
    ) -> Result<(usize, usize), Refusal> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match &mut self.frame {
                Frame::Header => {
                    self.header[usize::from(self.have)] = rest[0];
                    self.have += 1;
                    used += 1;
                    if usize::from(self.have) == header_len(&self.header[..usize::from(self.have)]) {
                        self.begin_frame(limit)?;
                        if let Some(inflated) = self.end_of_fragment(inflater, limit)? {
                            return Ok((used, inflated));
                        }
                    }
                }
                Frame::Plain { left } => {
                    let n = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&rest[..n]);
                    *left -= n as u64;
                    used += n;
                    if *left == 0 {
                        self.frame = Frame::Header;
                    }
                }
                Frame::Compressed { left, mask, at, .. } => {
                    let n = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    for &byte in &rest[..n] {
                        self.compressed.push(byte ^ mask[usize::from(*at & 3)]);
                        *at = at.wrapping_add(1);
                    }
                    *left -= n as u64;
                    used += n;
                    if let Some(inflated) = self.end_of_fragment(inflater, limit)? {
                        return Ok((used, inflated));
                    }
                }
            }
        }
        Ok((used, 0))
    }

    /// A header is complete: decides what its frame is.
    fn begin_frame(&mut self, limit: usize) -> Result<(), Refusal> {
        let len = usize::from(self.have);
        self.have = 0;
        let (first, second) = (self.header[0], self.header[1]);
        let (fin, rsv1, other_rsv, opcode) =
            (first & 0x80 != 0, first & 0x40 != 0, first & 0x30 != 0, first & 0x0f);
        let payload = wire::parse_header(&self.header[..len]).map_or(0, |header| header.payload_len);
        let protocol = |why: &str| Err((CloseCode::Protocol, why.to_string()));
        let collect = match opcode {
            _ if other_rsv => false, // tungstenite refuses it
            0x8..=0xf if rsv1 => return protocol("RSV1 set on a control frame"),
            0x0 if rsv1 => return protocol("RSV1 set on a continuation frame"),
            0x0 => self.message.is_some(),
            0x1 | 0x2 if self.message.is_some() => {
                return protocol("a new message began before the compressed one was complete")
            }
            0x1 | 0x2 => rsv1,
            _ => false,
        };
        if !collect {
            self.out.extend_from_slice(&self.header[..len]);
            self.frame = if payload == 0 { Frame::Header } else { Frame::Plain { left: payload } };
            return Ok(());
        }
        if second & 0x80 == 0 {
            return protocol("unmasked frame from the client");
        }
        if payload.saturating_add(self.compressed.len() as u64) > limit as u64 {
            return Err((CloseCode::Size, format!("compressed message over {limit} bytes")));
        }
        if opcode != 0 {
            self.message = Some(opcode);
        }
        let mask = self.header[len - 4..len].try_into().unwrap_or_default();
        self.frame = Frame::Compressed { left: payload, mask, at: 0, fin };
        Ok(())
    }

    /// After a compressed frame's bytes (or its header, for an empty one): once the frame is
    /// over, the next header is read, and if it was the message's last the message is inflated
    /// (its size returned).
    fn end_of_fragment(&mut self, inflater: &mut Inflater, limit: usize) -> Result<Option<usize>, Refusal> {
        let Frame::Compressed { left: 0, fin, .. } = self.frame else { return Ok(None) };
        self.frame = Frame::Header;
        if !fin {
            return Ok(None);
        }
        self.inflate_message(inflater, limit).map(Some)
    }

    /// The collected message inflated and framed for tungstenite; returns its size.
    fn inflate_message(&mut self, inflater: &mut Inflater, limit: usize) -> Result<usize, Refusal> {
        let opcode = self.message.take().unwrap_or(1);
        let compressed = std::mem::take(&mut self.compressed);
        // Room for the longest header before the payload, which is inflated in place; the
        // header is then written just before it.
        let start = self.out.len();
        self.out.resize(start + 14, 0);
        let inflated = inflater.inflate(&compressed, limit, &mut self.out);
        let size = self.out.len() - start - 14;
        if let Err(e) = inflated {
            self.out.truncate(start);
            return Err(match e {
                InflateError::TooBig => (CloseCode::Size, format!("message inflates past {limit} bytes")),
                InflateError::Corrupt(why) => {
                    (CloseCode::Invalid, format!("compressed message is not valid DEFLATE: {why}"))
                }
            });
        }
        // A final client frame, masked (as a client's must be) with a zero key.
        let mut header = Vec::with_capacity(14);
        wire::push_client_header(&mut header, 0x80 | opcode, size, Some([0; 4]));
        let at = start + 14 - header.len();
        self.out[at..start + 14].copy_from_slice(&header);
        // The unused bytes before the header, when it is not the longest, go.
        self.out.drain(start..at);
        Ok(size)
    }
}

/// How long a header is, as far as its first bytes tell (2 until the second byte is known).
fn header_len(header: &[u8]) -> usize {
    header.get(1).map_or(2, |&second| wire::header_len(second))
}

/// The stream tungstenite reads a deflating connection through: the transport, this
/// connection's place in its input, and the loop's inflater.
pub struct Inflating<'a, S> {
    pub transport: &'a mut Transport<S>,
    pub state: &'a mut InflateState,
    pub inflater: &'a mut Inflater,
}

impl<S: Stream> Inflating<'_, S> {
    /// Looks at bytes from the client; what it did not use yet is held for the next read.
    fn take_in(&mut self, input: &[u8]) {
        match self.state.process(input, self.inflater, self.transport.max_message()) {
            Ok((used, inflated)) => {
                self.transport.charge(inflated);
                self.state.held.extend_from_slice(&input[used..]);
            }
            Err(refusal) => {
                // Nothing after the bad frame is read; what came before it is handed on first.
                self.state.held = Vec::new();
                self.state.pending = Some(refusal);
            }
        }
    }
}

impl<S: Stream> Read for Inflating<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.state.serve(buf) {
                return Ok(n);
            }
            if let Some(refusal) = self.state.pending.take() {
                let error = io::Error::new(io::ErrorKind::InvalidData, refusal.1.clone());
                self.state.refusal = Some(refusal);
                return Err(error);
            }
            if self.state.held.is_empty() {
                let n = self.transport.read(buf)?;
                if n == 0 {
                    return Ok(0);
                }
                self.take_in(&buf[..n]);
            } else if self.transport.budget_spent() {
                // The rest waits for the next turn, like unread bytes in the socket.
                return Err(io::ErrorKind::WouldBlock.into());
            } else {
                let held = std::mem::take(&mut self.state.held);
                self.take_in(&held);
            }
        }
    }
}

impl<S> Write for Inflating<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.transport.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Compressor;
    use crate::wire::client_frame;

    const LIMIT: usize = 64 << 10;

    fn compressed(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(Compressor::default().compress(text, 15, &mut out));
        out
    }

    /// Feeds `input` in chunks of `chunk` bytes, as reads would bring it; returns what
    /// tungstenite would be handed.
    fn through(input: &[u8], chunk: usize) -> Result<Vec<u8>, Refusal> {
        let (mut state, mut inflater, mut seen) = (InflateState::default(), Inflater::default(), Vec::new());
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, _) = state.process(rest, &mut inflater, LIMIT)?;
                rest = &rest[used..];
            }
        }
        seen.extend_from_slice(&state.out);
        assert!(
            state.message.is_none() && matches!(state.frame, Frame::Header),
            "whole frames in, whole out"
        );
        Ok(seen)
    }

    #[test]
    fn plain_frames_pass_and_compressed_messages_become_one_plain_frame_at_any_chunking() {
        let text = "alice: a line said many times, many times, many times over. ".repeat(30);
        let deflated = compressed(text.as_bytes());
        let third = deflated.len() / 3;
        let key = Some([1, 2, 3, 4]);
        let mut input = client_frame(0x81, b"plain first", key);
        input.extend(client_frame(0x40 | 0x01, &deflated[..third], key));
        input.extend(client_frame(0x00, &deflated[third..2 * third], key));
        input.extend(client_frame(0x89, b"ping between", key));
        input.extend(client_frame(0x80, &deflated[2 * third..], key));
        input.extend(client_frame(0x82, &[7; 300], key));
        input.extend(client_frame(0x80 | 0x40 | 0x02, &compressed(&[]), key));
        let mut expected = client_frame(0x81, b"plain first", key);
        expected.extend(client_frame(0x89, b"ping between", key));
        expected.extend(client_frame(0x81, text.as_bytes(), Some([0; 4])));
        expected.extend(client_frame(0x82, &[7; 300], key));
        expected.extend(client_frame(0x82, b"", Some([0; 4])));
        for chunk in [1, 2, 3, 7, 13, 64, 256, 4096, input.len()] {
            assert_eq!(through(&input, chunk).unwrap(), expected, "in chunks of {chunk}");
        }
    }

    #[test]
    fn the_refusals() {
        let key = Some([5, 6, 7, 8]);
        let code = |input: Vec<u8>| through(&input, 5).unwrap_err().0;
        assert_eq!(code(client_frame(0x80 | 0x40 | 0x09, b"", key)), CloseCode::Protocol);
        let begun = client_frame(0x40 | 0x01, &compressed(b"begun"), key);
        assert_eq!(code([begun.clone(), client_frame(0x80 | 0x40, b"", key)].concat()), CloseCode::Protocol);
        assert_eq!(code([begun, client_frame(0x82, b"new", key)].concat()), CloseCode::Protocol);
        assert_eq!(
            code(client_frame(0x80 | 0x40 | 0x01, &compressed(b"unmasked"), None)),
            CloseCode::Protocol
        );
        assert_eq!(code(client_frame(0x80 | 0x40 | 0x01, &[0xff; 9], key)), CloseCode::Invalid);
        let bomb = compressed(&vec![0; LIMIT + 1]);
        assert_eq!(code(client_frame(0x80 | 0x40 | 0x02, &bomb, key)), CloseCode::Size);
        // A header announcing more compressed bytes than the limit is refused at once.
        let mut huge = vec![0x80 | 0x40 | 0x02, 0x80 | 127];
        huge.extend(((LIMIT + 1) as u64).to_be_bytes());
        huge.extend([0; 4]);
        assert_eq!(code(huge), CloseCode::Size);
    }

    #[test]
    fn an_inflated_message_stops_the_read_and_leaves_the_rest_for_the_next() {
        let key = Some([9, 9, 9, 9]);
        let text = "x".repeat(1000);
        let mut input = client_frame(0x80 | 0x40 | 0x01, &compressed(text.as_bytes()), key);
        let first = input.len();
        input.extend(client_frame(0x81, b"after", key));
        let (mut state, mut inflater) = (InflateState::default(), Inflater::default());
        assert_eq!(state.process(&input, &mut inflater, LIMIT).unwrap(), (first, 1000));
        assert!(!state.is_idle(), "the inflated message waits to be read");
        let mut buf = [0u8; 4096];
        let n = state.serve(&mut buf).unwrap();
        assert_eq!(&buf[..n], &client_frame(0x81, text.as_bytes(), Some([0; 4]))[..]);
        assert_eq!(state.serve(&mut buf), None);
        assert!(state.is_idle());
    }
}
