//! One message compressed or inflated at a time, as `permessage-deflate` with no context takeover
//! asks (RFC 7692 section 7.2): each message is a raw DEFLATE stream of its own, ended by an
//! empty stored block whose last four bytes (`00 00 ff ff`) are left off on the wire. No state
//! outlives a message, so one [`Compressor`] and one [`Inflater`] serve every connection of the
//! loop: a broadcast is compressed once for all its recipients, and no connection carries a zlib
//! state (a compressor is about 256 KiB, an inflater about 40 KiB).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The four bytes every compressed message ends with on the deflater's side, and which the
/// inflater's side appends again (RFC 7692 7.2.1, 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window, and the one the inflater uses: it inflates what any smaller window
/// produced.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window zlib compresses with (it has no raw 256-byte window): a client that asks
/// for 8 bits gets every message uncompressed, which RFC 7692 allows message by message.
pub const MIN_COMPRESSING_BITS: u8 = 9;

/// The loop's compressors, one per window size in use (most clients leave the size to the
/// server: 15 bits), each made when first needed.
#[derive(Default)]
pub struct Compressor {
    by_window: [Option<Box<Compress>>; (MAX_WINDOW_BITS - MIN_COMPRESSING_BITS + 1) as usize],
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made: Vec<u8> = (MIN_COMPRESSING_BITS..=MAX_WINDOW_BITS)
            .filter(|bits| self.by_window[usize::from(bits - MIN_COMPRESSING_BITS)].is_some())
            .collect();
        f.debug_struct("Compressor").field("windows", &made).finish()
    }
}

impl Compressor {
    /// `payload` compressed as one message for a peer that allows `window_bits` (the tail left
    /// off), appended to `out`; false, with `out` as it was, if that window is too small for zlib.
    pub fn compress(&mut self, payload: &[u8], window_bits: u8, out: &mut Vec<u8>) -> bool {
        if !(MIN_COMPRESSING_BITS..=MAX_WINDOW_BITS).contains(&window_bits) {
            return false;
        }
        let slot = &mut self.by_window[usize::from(window_bits - MIN_COMPRESSING_BITS)];
        let deflate = slot.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(Compression::default(), false, window_bits))
        });
        deflate.reset();
        let start = out.len();
        // A sync flush ends the output on a byte boundary with the empty stored block; zlib
        // wants a few bytes of room beyond the input for incompressible data.
        out.reserve(payload.len() + payload.len() / 1000 + 16);
        let mut input = payload;
        loop {
            let before = deflate.total_in();
            let status = deflate.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(deflate.total_in() - before) as usize..];
            match status {
                Ok(Status::Ok | Status::BufError) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => out.reserve(4096),
                Err(e) => {
                    // Compressing memory never fails; should zlib say otherwise, the message
                    // goes uncompressed.
                    log::error!("deflate failed: {e}");
                    out.truncate(start);
                    return false;
                }
            }
        }
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        true
    }
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the limit (close 1009); inflating stopped there.
    TooBig,
    /// It is not a valid DEFLATE stream (close 1007, as for any payload that is not what it
    /// claims to be).
    Corrupt(String),
}

/// The loop's one inflater.
pub struct Inflater(Box<Decompress>);

impl Default for Inflater {
    fn default() -> Self {
        Self(Box::new(Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)))
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Inflater {
    /// Inflates one message (its compressed bytes without the tail) into `out`, which receives
    /// at most `limit` bytes: a message that would inflate further is [`InflateError::TooBig`]
    /// and its rest is never inflated, so memory stays bounded by the limit whatever the ratio.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let inflate = &mut *self.0;
        inflate.reset(false);
        let start = out.len();
        for part in [compressed, &TAIL[..]] {
            let mut input = part;
            loop {
                // Room for one byte past the limit: its arrival is how "too big" is known.
                let room = (limit + 1).saturating_sub(out.len() - start);
                if room == 0 {
                    out.truncate(start + limit);
                    return Err(InflateError::TooBig);
                }
                // Doubling what has come out so far (at least four times the input), never
                // past the limit: a bomb gets no more memory than an honest message of the
                // limit's size.
                let grow = (out.len() - start).max(input.len().saturating_mul(4)).max(4096);
                out.reserve_exact(room.min(grow));
                let before = inflate.total_in();
                let status = inflate
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|e| InflateError::Corrupt(e.message().unwrap_or("invalid data").to_string()))?;
                input = &input[(inflate.total_in() - before) as usize..];
                if out.len() - start > limit {
                    out.truncate(start + limit);
                    return Err(InflateError::TooBig);
                }
                match status {
                    // A sender may end a message with a final block instead of the empty stored
                    // one (RFC 7692 7.2.3.4): the stream ends there, the tail after it unread.
                    Status::StreamEnd => return Ok(()),
                    _ if input.is_empty() && out.len() < out.capacity() => break,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes no compressor can shrink (xorshift).
    pub(crate) fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn round_trip(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut compressed = Vec::new();
        assert!(Compressor::default().compress(payload, bits, &mut compressed));
        let mut out = Vec::new();
        Inflater::default().inflate(&compressed, payload.len(), &mut out).unwrap();
        out
    }

    #[test]
    fn messages_survive_the_round_trip_at_every_window() {
        let text = "alice: the quick brown fox jumps over the lazy dog, again and again. ".repeat(40);
        for bits in MIN_COMPRESSING_BITS..=MAX_WINDOW_BITS {
            assert_eq!(round_trip(text.as_bytes(), bits), text.as_bytes(), "{bits} bits");
        }
        assert_eq!(round_trip(b"", 15), b"");
        let noise = noise(100_000);
        assert_eq!(round_trip(&noise, 15), noise);
    }

    #[test]
    fn the_known_rfc_example_inflates() {
        // RFC 7692 7.2.3.1: "Hello" compressed.
        let mut out = Vec::new();
        Inflater::default().inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        // 7.2.3.3: "Hello" as a stored block.
        out.clear();
        Inflater::default()
            .inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00], 5, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut bomb = Vec::new();
        assert!(Compressor::default().compress(&vec![0u8; 10 << 20], 15, &mut bomb));
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        assert_eq!(Inflater::default().inflate(&bomb, 64 << 10, &mut out), Err(InflateError::TooBig));
        assert_eq!(out.len(), 64 << 10);
        assert!(out.capacity() <= (64 << 10) + 1, "{}", out.capacity());
    }

    #[test]
    fn garbage_is_corrupt_and_the_inflater_recovers() {
        let mut inflater = Inflater::default();
        let mut out = Vec::new();
        assert!(matches!(inflater.inflate(&[0xff; 16], 1000, &mut out), Err(InflateError::Corrupt(_))));
        out.clear();
        inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 5, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_window_too_small_for_zlib_is_refused() {
        let mut out = vec![1];
        assert!(!Compressor::default().compress(b"hello", 8, &mut out));
        assert_eq!(out, [1]);
    }
}
