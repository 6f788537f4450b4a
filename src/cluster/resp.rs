//! RESP2, the Redis wire format, for one link: commands are encoded onto the end of its outbox
//! (arrays of bulk strings, written straight into it), replies are decoded by this module's
//! own [`Decoder`] as their bytes arrive (into the sans-IO `redis-protocol` crate's frames). No socket here, and no client library with a runtime
//! of its own.
//!
//! **Why not `redis-protocol`'s decoder.** It is a function of a buffer: it parses from the
//! buffer's start and, while the reply is unfinished, returns nothing and keeps nothing. A reply
//! that arrives over N reads is then parsed N times from its start, quadratic in its size: a
//! Redis answering `*60000000` and then streaming `:1` items held the loop for 5 to 10 s (issue
//! 23). [`Decoder`] keeps its place between reads (the arrays being filled, the line or bulk
//! string being read) and looks at each byte once, so decoding costs what was read; it also
//! stops after a budget of frames, so the link bounds each read's share of a loop turn in
//! bytes and in frames alike. A string that arrives in one read is a slice of it, not a copy.
//!
//! **Bounds.** A reply is refused, and its link dropped, once it passes its [`Limits`]: its
//! bytes, its frames (nested ones included) and its nesting. A declared length (`*N`, `$N`)
//! that would pass a bound is refused when its header arrives, before any of it is kept.

use std::fmt;

use bytes::{Bytes, BytesMut};
use redis_protocol::bytes_utils::Str;
pub use redis_protocol::resp2::types::BytesFrame as Frame;

/// Appends one command (an array of bulk strings, as Redis expects) to `out`, written
/// straight into it: no frame built first, no copy of each argument (a message's body is one).
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let size: usize = args.iter().map(|arg| arg.as_ref().len() + 16).sum();
    out.reserve(size + 16);
    header(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `KIND N\r\n`: an array's or a bulk string's header.
fn header(out: &mut BytesMut, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let (mut at, mut n) = (digits.len(), n);
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The bytes of a string reply (simple or bulk); None for anything else.
pub fn bytes(frame: &Frame) -> Option<&Bytes> {
    match frame {
        Frame::SimpleString(b) | Frame::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A string reply as UTF-8 text; None for anything else.
pub fn text(frame: &Frame) -> Option<&str> {
    bytes(frame).and_then(|b| std::str::from_utf8(b).ok())
}

/// An integer reply, or a string reply that holds one (Lua numbers come back as integers,
/// hash fields as strings).
pub fn integer(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// The error text of an error reply.
pub fn error(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(e) => Some(e.to_string()),
        _ => None,
    }
}

/// Bytes of one reply, on the wire, by default. The largest reply wschat asks for is a room's
/// history (the load script in `room.rs`): `--history` entries `[id, ["m", body]]`, the body a
/// message's JSON. Stored text has no control characters but tab (`chat::command::parse_line`),
/// so JSON at most doubles it: with the default flags (100 messages of at most 64 KiB) the
/// largest history is 100 × (2 × 64 KiB + 512) bytes, under 13 MiB; 64 MiB leaves five times
/// that. `--history` and `--max-message-size` have no upper limit, so larger flags need
/// [`Limits::for_flags`] (and processes sharing a Redis should share them: a room's log holds
/// what every process wrote).
pub const MAX_REPLY_BYTES: usize = 64 << 20;
/// Frames in one reply (the reply itself and every nested one), by default: a history is 5 per
/// message (505 with the default flags), a `/who` or `/rooms` answer 2 per member or room, so a
/// million is a room of 500,000 members across the cluster. A frame takes 40 bytes in memory
/// beside its bytes, so a reply refused at this bound has cost at most 40 MB of frames.
pub const MAX_REPLY_ITEMS: usize = 1_000_000;
/// Arrays inside arrays: a history nests 4 deep (the reply, its entries, an entry, its fields);
/// the bound keeps dropping a frame (recursive) from running deep.
pub const MAX_REPLY_DEPTH: usize = 8;

/// Bytes a history entry takes beside its message's text: the JSON around it (a nick of up to
/// 32 three-byte characters, escaped, the time, the action flag) and the RESP framing.
const ENTRY_OVERHEAD: usize = 512;
/// Frames per history entry: `[id, ["m", body]]`.
const ENTRY_FRAMES: usize = 5;

/// The bounds on one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes on the wire.
    pub bytes: usize,
    /// Frames: the reply itself and every nested one.
    pub items: usize,
    /// Arrays open inside one another.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { bytes: MAX_REPLY_BYTES, items: MAX_REPLY_ITEMS, depth: MAX_REPLY_DEPTH }
    }
}

impl Limits {
    /// Bounds that fit the largest history these flags (`--history`, `--max-message-size`)
    /// can load, and never below the defaults.
    pub fn for_flags(history: usize, max_message_size: usize) -> Self {
        let entry = max_message_size.saturating_mul(2).saturating_add(ENTRY_OVERHEAD);
        let bytes = history.saturating_mul(entry).saturating_add(ENTRY_OVERHEAD);
        let items = history.saturating_mul(ENTRY_FRAMES).saturating_add(ENTRY_FRAMES);
        let default = Self::default();
        Self { bytes: bytes.max(default.bytes), items: items.max(default.items), ..default }
    }
}

/// Why a reply was refused; the link is then dropped, and this is what the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not RESP2 as Redis sends it.
    NotResp(&'static str),
    /// Past [`Limits::bytes`]: a bulk string declared that large (its length), or bytes that
    /// kept coming.
    Bytes { bound: usize, declared: Option<usize> },
    /// Past [`Limits::items`], by an array declared this long. (Every frame but the reply
    /// itself is declared by its array's length, so the count is known before items arrive.)
    Items { bound: usize, declared: usize },
    /// Past [`Limits::depth`].
    Depth { bound: usize },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |bound: usize| match bound % (1 << 20) {
            0 => format!("{} MiB", bound >> 20),
            _ => format!("{bound} bytes"),
        };
        match self {
            Self::NotResp(why) => write!(f, "not RESP: {why}"),
            Self::Bytes { bound, declared: Some(len) } => write!(
                f,
                "reply refused: a bulk string of {len} bytes declared, past the bound of {} on one reply",
                size(*bound)
            ),
            Self::Bytes { bound, declared: None } => {
                write!(f, "reply refused: past the bound of {} on one reply", size(*bound))
            }
            Self::Items { bound, declared } => write!(
                f,
                "reply refused: an array of {declared} items declared, taking it past the bound of \
                 {bound} items on one reply"
            ),
            Self::Depth { bound } => {
                write!(f, "reply refused: arrays nested past the bound of {bound} levels")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// Longest header or integer line (`$N`, `*N`, `:N`): an i64 is 20 characters.
const MAX_NUMBER_LINE: usize = 32;
/// Room made at once for an array's items, whatever it declares: more only as they arrive.
const PREALLOC_ITEMS: usize = 1024;

/// Where the decoder is inside the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A frame's type byte is next.
    Type,
    /// Inside the line of a frame of this type (`+ - : $ *`), up to its LF.
    Line(u8),
    /// Inside a bulk string's payload: this many bytes still to come.
    Bulk(usize),
    /// After a payload, its CR LF: this many bytes of it still to come.
    BulkEnd(usize),
}

/// An array being filled.
struct Open {
    items: Vec<Frame>,
    /// Items still to come (never 0: a full array is closed at once).
    left: usize,
}

/// Decodes replies as their bytes arrive, keeping its place between reads; see the module doc.
pub struct Decoder {
    limits: Limits,
    state: State,
    /// Arrays being filled, outermost first.
    open: Vec<Open>,
    /// The line read so far, when a line spans reads.
    line: Vec<u8>,
    /// The bulk string's payload read so far, when it spans reads. Its buffer is used again
    /// (no fresh pages to fault in) if the string cut from it last has been dropped by the
    /// time the next one starts.
    bulk: BytesMut,
    /// The bulk string's payload, when it came in one read.
    whole: Bytes,
    /// Bytes of the unfinished reply so far, and its frames: those begun and those its arrays
    /// have declared (0 between replies).
    bytes: usize,
    items: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Type,
            open: Vec::new(),
            line: Vec::new(),
            bulk: BytesMut::new(),
            whole: Bytes::new(),
            bytes: 0,
            items: 0,
        }
    }

    /// Forgets a half-read reply (the link was dropped).
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Whether a reply is half read.
    pub fn is_mid_reply(&self) -> bool {
        self.state != State::Type || !self.open.is_empty()
    }

    /// Decodes `input`, the bytes that followed those the last call used, pushing every reply
    /// it completes onto `out`, and returns how many bytes it used: all of them, unless
    /// `budget` frames were begun first (each frame begun takes one), when it stops before the
    /// next frame. Strings wholly inside `input` are slices of it, not copies (a reply's frames
    /// share its reads' buffers, as with `redis-protocol`). After an error the decoder is in
    /// no useful state: drop the link (or [`reset`](Self::reset)).
    pub fn feed(
        &mut self,
        input: &Bytes,
        out: &mut Vec<Frame>,
        budget: &mut usize,
    ) -> Result<usize, Refused> {
        let mut at = 0;
        while let Some(rest) = input.get(at..).filter(|rest| !rest.is_empty()) {
            at += match self.state {
                State::Type if *budget == 0 => return Ok(at),
                State::Type => {
                    *budget -= 1;
                    let kind = rest[0];
                    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
                        return Err(Refused::NotResp("a frame of an unknown type"));
                    }
                    self.spend(1)?;
                    if self.open.is_empty() {
                        // The reply itself; an array's items were counted when it declared them.
                        self.items = 1;
                    }
                    // Its line is usually all here: read in the same step.
                    1 + self.line(kind, input, at + 1, out)?
                }
                State::Line(kind) => self.line(kind, input, at, out)?,
                State::Bulk(left) if self.bulk.is_empty() && rest.get(left..left + 2) == Some(b"\r\n") => {
                    // The payload and its CR LF all in this read: a slice of it. (Its length
                    // was checked against the bound when declared.)
                    self.spend(left + 2)?;
                    self.state = State::Type;
                    self.finish(Frame::BulkString(input.slice(at..at + left)), out);
                    left + 2
                }
                State::Bulk(left) => {
                    let n = left.min(rest.len());
                    self.spend(n)?;
                    if n == left && self.bulk.is_empty() {
                        self.whole = input.slice(at..at + n);
                    } else {
                        if self.bulk.is_empty() {
                            // All of it at once, so it is never copied to grow: pages not yet
                            // written cost no memory, and the length is within the bound.
                            self.bulk.reserve(left);
                        }
                        self.bulk.extend_from_slice(&rest[..n]);
                    }
                    self.state = if n == left { State::BulkEnd(2) } else { State::Bulk(left - n) };
                    n
                }
                State::BulkEnd(left) => {
                    self.spend(1)?;
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    if rest[0] != expected {
                        return Err(Refused::NotResp("a bulk string longer than declared"));
                    }
                    if left == 2 {
                        self.state = State::BulkEnd(1);
                    } else {
                        self.state = State::Type;
                        let payload = match self.bulk.is_empty() {
                            true => std::mem::take(&mut self.whole),
                            false => self.bulk.split().freeze(),
                        };
                        self.finish(Frame::BulkString(payload), out);
                    }
                    1
                }
            };
        }
        Ok(at)
    }

    /// Reads the line of a frame of type `kind` from `input[from..]`: up to its LF if that is
    /// there (the frame is then done, or its payload or items are next), else what there is,
    /// kept for the next read. Returns the bytes used.
    fn line(&mut self, kind: u8, input: &Bytes, from: usize, out: &mut Vec<Frame>) -> Result<usize, Refused> {
        let rest = input.get(from..).unwrap_or_default();
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            self.spend(rest.len())?;
            if matches!(kind, b':' | b'$' | b'*')
                && self.line.len().saturating_add(rest.len()) > MAX_NUMBER_LINE
            {
                return Err(Refused::NotResp("a number line too long"));
            }
            self.line.extend_from_slice(rest);
            self.state = State::Line(kind);
            return Ok(rest.len());
        };
        self.spend(end + 1)?;
        if self.line.is_empty() {
            self.end_line(kind, &rest[..end], Some(input), out)?;
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&rest[..end]);
            let ended = self.end_line(kind, &line, None, out);
            line.clear();
            self.line = line;
            ended?;
        }
        Ok(end + 1)
    }

    /// Counts `n` more bytes of the reply against its bound.
    fn spend(&mut self, n: usize) -> Result<(), Refused> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.bytes {
            return Err(Refused::Bytes { bound: self.limits.bytes, declared: None });
        }
        Ok(())
    }

    /// A whole line (up to, not including, its LF) of a frame of type `kind`; `source` is the
    /// read it lies in, if it lies in one.
    fn end_line(
        &mut self,
        kind: u8,
        line: &[u8],
        source: Option<&Bytes>,
        out: &mut Vec<Frame>,
    ) -> Result<(), Refused> {
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(Refused::NotResp("a line not ended by CR LF"));
        };
        self.state = State::Type;
        match kind {
            b'+' => {
                let text = source.map_or_else(|| Bytes::copy_from_slice(line), |read| read.slice_ref(line));
                self.finish(Frame::SimpleString(text), out)
            }
            b'-' => self.finish(Frame::Error(Str::from(String::from_utf8_lossy(line).into_owned())), out),
            b':' => self.finish(Frame::Integer(number(line)?), out),
            b'$' => match number(line)? {
                -1 => self.finish(Frame::Null, out),
                len => {
                    let len = usize::try_from(len).map_err(|_| Refused::NotResp("a negative length"))?;
                    // The payload and its CR LF must fit in what is left of the reply's bound.
                    if len
                        .checked_add(2)
                        .and_then(|n| n.checked_add(self.bytes))
                        .is_none_or(|n| n > self.limits.bytes)
                    {
                        return Err(Refused::Bytes { bound: self.limits.bytes, declared: Some(len) });
                    }
                    self.state = if len == 0 { State::BulkEnd(2) } else { State::Bulk(len) };
                }
            },
            b'*' => match number(line)? {
                -1 => self.finish(Frame::Null, out),
                0 => self.finish(Frame::Array(Vec::new()), out),
                len => {
                    let len = usize::try_from(len).map_err(|_| Refused::NotResp("a negative length"))?;
                    match len.checked_add(self.items).filter(|&n| n <= self.limits.items) {
                        Some(items) => self.items = items,
                        None => return Err(Refused::Items { bound: self.limits.items, declared: len }),
                    }
                    if self.open.len() >= self.limits.depth {
                        return Err(Refused::Depth { bound: self.limits.depth });
                    }
                    self.open.push(Open { items: Vec::with_capacity(len.min(PREALLOC_ITEMS)), left: len });
                }
            },
            _ => return Err(Refused::NotResp("a frame of an unknown type")),
        }
        Ok(())
    }

    /// A whole frame: into the array being filled (closing every array it completes), or out
    /// as a reply.
    fn finish(&mut self, mut frame: Frame, out: &mut Vec<Frame>) {
        loop {
            let Some(open) = self.open.last_mut() else {
                out.push(frame);
                self.bytes = 0;
                self.items = 0;
                return;
            };
            open.items.push(frame);
            open.left = open.left.saturating_sub(1);
            if open.left > 0 {
                return;
            }
            let items = self.open.pop().map(|open| open.items).unwrap_or_default();
            frame = Frame::Array(items);
        }
    }
}

/// A length or an integer: ASCII digits, optionally after a minus sign. (By hand: it is on
/// every frame's path, and `str::parse` checks UTF-8 first.)
fn number(line: &[u8]) -> Result<i64, Refused> {
    const NOT_A_NUMBER: Refused = Refused::NotResp("not a number where one was due");
    let (negative, digits) = match line.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(NOT_A_NUMBER);
    }
    // Summed negative, so that i64::MIN fits.
    let mut n: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(NOT_A_NUMBER);
        }
        n = n.checked_mul(10).and_then(|n| n.checked_sub(i64::from(digit - b'0'))).ok_or(NOT_A_NUMBER)?;
    }
    if negative {
        Ok(n)
    } else {
        n.checked_neg().ok_or(NOT_A_NUMBER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::encode::extend_encode;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    impl Decoder {
        /// `feed` of a copy of `input`, without a budget.
        fn feed_slice(&mut self, input: &[u8], out: &mut Vec<Frame>) -> Result<(), Refused> {
            let mut budget = usize::MAX;
            let used = self.feed(&Bytes::copy_from_slice(input), out, &mut budget)?;
            assert_eq!(used, input.len());
            Ok(())
        }
    }

    fn decode_all(decoder: &mut Decoder, input: &[u8]) -> Result<Vec<Frame>, Refused> {
        let mut out = Vec::new();
        decoder.feed_slice(input, &mut out)?;
        Ok(out)
    }

    fn bulk(s: &str) -> Frame {
        Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Replies of every kind, nested, nulls and empties included, and what they decode to.
    fn samples() -> (Vec<u8>, Vec<Frame>) {
        let wire = b"+OK\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n-ERR no such key\r\n\
            *4\r\n$5\r\nep0ch\r\n$1\r\n9\r\n$-1\r\n*2\r\n*2\r\n$3\r\n9-1\r\n*2\r\n$1\r\nm\r\n$5\r\n{\"a\"}\r\n*0\r\n\
            *3\r\n+a\r\n*1\r\n*1\r\n:1\r\n$2\r\n\r\n\r\n";
        let frames = vec![
            Frame::SimpleString(Bytes::from_static(b"OK")),
            Frame::Integer(42),
            Frame::Integer(-7),
            bulk("hello"),
            bulk(""),
            Frame::Null,
            Frame::Null,
            Frame::Array(vec![]),
            Frame::Error(Str::from("ERR no such key")),
            Frame::Array(vec![
                bulk("ep0ch"),
                bulk("9"),
                Frame::Null,
                Frame::Array(vec![
                    Frame::Array(vec![bulk("9-1"), Frame::Array(vec![bulk("m"), bulk("{\"a\"}")])]),
                    Frame::Array(vec![]),
                ]),
            ]),
            Frame::Array(vec![
                Frame::SimpleString(Bytes::from_static(b"a")),
                Frame::Array(vec![Frame::Array(vec![Frame::Integer(1)])]),
                bulk("\r\n"),
            ]),
        ];
        (wire.to_vec(), frames)
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &["SET", "k", "v"]);
        encode_command(&mut out, &[b"PING".as_slice()]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n");
        // As the crate's encoder writes it, lengths of every width and empty strings included.
        let args = ["", "0123456789", &"x".repeat(1234)];
        let (mut ours, mut theirs) = (BytesMut::new(), BytesMut::new());
        encode_command(&mut ours, &args);
        let frame = Frame::Array(
            args.iter().map(|a| Frame::BulkString(Bytes::copy_from_slice(a.as_bytes()))).collect(),
        );
        extend_encode(&mut theirs, &frame, false).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn replies_decode_whole_and_in_order() {
        let (wire, frames) = samples();
        let mut decoder = Decoder::default();
        assert_eq!(decode_all(&mut decoder, &wire).unwrap(), frames);
        assert!(!decoder.is_mid_reply());
        let got = decode_all(&mut decoder, b"+OK\r\n").unwrap();
        assert_eq!(got.first().and_then(text), Some("OK"));
        assert_eq!(got.first().and_then(integer), None);
        let got = decode_all(&mut decoder, b"-ERR no\r\n:5\r\n").unwrap();
        assert_eq!(got.first().and_then(error).as_deref(), Some("ERR no"));
        assert_eq!(got.get(1).and_then(integer), Some(5));
    }

    #[test]
    fn replies_split_at_every_byte_decode_the_same() {
        let (wire, frames) = samples();
        for cut in 0..=wire.len() {
            let mut decoder = Decoder::default();
            let mut got = decode_all(&mut decoder, &wire[..cut]).unwrap();
            got.extend(decode_all(&mut decoder, &wire[cut..]).unwrap());
            assert_eq!(got, frames, "cut at {cut}");
        }
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for byte in &wire {
            decoder.feed_slice(std::slice::from_ref(byte), &mut got).unwrap();
        }
        assert_eq!(got, frames, "one byte at a time");
        assert!(!decoder.is_mid_reply());
    }

    #[test]
    fn a_cut_reply_waits_for_the_rest() {
        let mut decoder = Decoder::default();
        assert_eq!(decode_all(&mut decoder, b"*2\r\n$5\r\nhel").unwrap(), []);
        assert!(decoder.is_mid_reply());
        assert_eq!(decode_all(&mut decoder, b"lo\r\n").unwrap(), []);
        assert_eq!(
            decode_all(&mut decoder, b":1\r\n").unwrap(),
            [Frame::Array(vec![bulk("hello"), Frame::Integer(1)])]
        );
    }

    #[test]
    fn what_is_not_resp_is_refused() {
        for junk in [
            &b"?what\r\n"[..],
            b":12x\r\n",
            b":\r\n",
            b"+OK\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999999999999999\r\n",
            b":123456789012345678901234567890123456789",
            b":9223372036854775808\r\n",
            b":-\r\n",
            b":--1\r\n",
            b":+1\r\n",
        ] {
            let got = decode_all(&mut Decoder::default(), junk);
            assert!(matches!(got, Err(Refused::NotResp(_))), "{:?}: {got:?}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn integers_to_the_ends_of_i64() {
        let got = decode_all(
            &mut Decoder::default(),
            b":9223372036854775807\r\n:-9223372036854775808\r\n:-0\r\n:007\r\n",
        );
        assert_eq!(
            got.unwrap(),
            [Frame::Integer(i64::MAX), Frame::Integer(i64::MIN), Frame::Integer(0), Frame::Integer(7)]
        );
    }

    #[test]
    fn declared_lengths_past_a_bound_are_refused_at_once() {
        let limits = Limits::default();
        let got = decode_all(&mut Decoder::default(), b"*60000000\r\n");
        assert_eq!(got, Err(Refused::Items { bound: limits.items, declared: 60_000_000 }));
        assert!(got.unwrap_err().to_string().contains("past the bound of 1000000 items on one reply"));
        // Nested: counted with the reply (1), its array's items (2) and what they declare.
        let got = decode_all(&mut Decoder::default(), b"*2\r\n*999998\r\n");
        assert_eq!(got, Err(Refused::Items { bound: limits.items, declared: 999_998 }));
        let got = decode_all(&mut Decoder::default(), b"*2\r\n*999997\r\n");
        assert_eq!(got, Ok(vec![]), "exactly at the bound");
        let got = decode_all(&mut Decoder::default(), format!("${}\r\n", 64 << 20).as_bytes());
        assert_eq!(got, Err(Refused::Bytes { bound: limits.bytes, declared: Some(64 << 20) }));
        assert!(got.unwrap_err().to_string().contains("past the bound of 64 MiB on one reply"));
        let got = decode_all(&mut Decoder::default(), format!("${}\r\n", u64::MAX >> 1).as_bytes());
        assert!(matches!(got, Err(Refused::Bytes { declared: Some(_), .. })), "{got:?}");
        let deep = "*1\r\n".repeat(MAX_REPLY_DEPTH + 1);
        let got = decode_all(&mut Decoder::default(), deep.as_bytes());
        assert_eq!(got, Err(Refused::Depth { bound: MAX_REPLY_DEPTH }));
        let deep_enough = format!("{}:1\r\n", "*1\r\n".repeat(MAX_REPLY_DEPTH));
        assert_eq!(decode_all(&mut Decoder::default(), deep_enough.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn items_that_keep_coming_are_refused_at_the_item_bound() {
        // Each array declared within the bound, the sum past it: 1 + 1,000 frames, then 2 more
        // per pair.
        let limits = Limits { items: 3_000, ..Limits::default() };
        let mut decoder = Decoder::new(limits);
        let mut out = Vec::new();
        decoder.feed_slice(b"*1000\r\n", &mut out).unwrap();
        let pair = b"*2\r\n:1\r\n:1\r\n";
        let mut fed = 0;
        let refused = loop {
            if let Err(e) = decoder.feed_slice(pair, &mut out) {
                break e;
            }
            fed += 1;
        };
        assert_eq!(refused, Refused::Items { bound: 3_000, declared: 2 });
        assert_eq!(fed, 999, "refused on the first array that passes the bound");
        assert!(out.is_empty());
    }

    #[test]
    fn an_endless_array_streamed_in_chunks_is_refused_in_linear_time() {
        // The shape from issue 23: a declared length the item bound allows (raised here so the
        // byte bound is the one reached), then `:1` items for ever. Fed one byte per call, a
        // decoder that parses from the start on each call would look at some 2^39 bytes
        // before the bound (hours): this one at each byte once. The deadline is a correctness
        // bound (thirty times what a debug build takes), not a timing goal.
        let limits = Limits { bytes: 1 << 20, items: 100_000_000, depth: MAX_REPLY_DEPTH };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut decoder = Decoder::new(limits);
        let mut out = Vec::new();
        decoder.feed_slice(b"*60000000\r\n", &mut out).unwrap();
        let mut fed = 11;
        let refused = 'stream: loop {
            for &byte in b":1\r\n" {
                if let Err(e) = decoder.feed_slice(&[byte], &mut out) {
                    break 'stream e;
                }
                fed += 1;
            }
            assert!(Instant::now() < deadline, "still decoding after {fed} bytes");
        };
        assert_eq!(refused, Refused::Bytes { bound: 1 << 20, declared: None });
        assert_eq!(fed, 1 << 20, "refused on the first byte past the bound");
        // And in 64 KiB reads, at the default bounds: 500,000 pairs declared, refused with
        // the one that passes a million frames.
        let mut decoder = Decoder::default();
        decoder.feed_slice(b"*500000\r\n", &mut out).unwrap();
        let per_read = (64 << 10) / 12;
        let chunk = b"*2\r\n:1\r\n:1\r\n".repeat(per_read);
        let mut reads = 0;
        let refused = loop {
            if let Err(e) = decoder.feed_slice(&chunk, &mut out) {
                break e;
            }
            reads += 1;
            assert!(Instant::now() < deadline);
        };
        assert_eq!(refused, Refused::Items { bound: MAX_REPLY_ITEMS, declared: 2 });
        assert_eq!(reads, 249_999 / per_read, "refused in the read that passed it");
        assert!(out.is_empty());
    }

    #[test]
    fn a_budget_stops_decoding_before_the_next_frame() {
        let wire = Bytes::from_static(b"*2\r\n:1\r\n$3\r\nabc\r\n:4\r\n+OK\r\n");
        let (mut decoder, mut out) = (Decoder::default(), Vec::new());
        let mut budget = 3;
        let used = decoder.feed(&wire, &mut out, &mut budget).unwrap();
        assert_eq!((used, budget), (17, 0), "three frames begun: the array and its two items");
        assert_eq!(out, [Frame::Array(vec![Frame::Integer(1), bulk("abc")])]);
        let mut budget = 1;
        let used = decoder.feed(&wire.slice(17..), &mut out, &mut budget).unwrap();
        assert_eq!((used, budget), (4, 0));
        let used = decoder.feed(&wire.slice(21..), &mut out, &mut 10).unwrap();
        assert_eq!(used, 5);
        assert_eq!(out[1..], [Frame::Integer(4), Frame::SimpleString(Bytes::from_static(b"OK"))]);
        // Inside a frame, a spent budget still lets it finish (its payload is not frames).
        let (mut decoder, mut out) = (Decoder::default(), Vec::new());
        assert_eq!(decoder.feed(&Bytes::from_static(b"$3\r\na"), &mut out, &mut 1), Ok(5));
        assert_eq!(decoder.feed(&Bytes::from_static(b"bc\r\n:1\r\n"), &mut out, &mut 0), Ok(4));
        assert_eq!(out, [bulk("abc")]);
    }

    #[test]
    fn after_a_reply_its_counts_start_again() {
        // Two replies of 600,000 frames each: together past the bound, each within it.
        let mut decoder = Decoder::default();
        let mut wire = b"*599999\r\n".to_vec();
        wire.extend(b":1\r\n".repeat(599_999));
        let mut out = Vec::new();
        decoder.feed_slice(&wire, &mut out).unwrap();
        decoder.feed_slice(&wire, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        decoder.feed_slice(b"*3\r\n:1\r\n", &mut out).unwrap();
        decoder.reset();
        assert!(!decoder.is_mid_reply());
        assert_eq!(decode_all(&mut decoder, b":2\r\n").unwrap(), [Frame::Integer(2)]);
    }

    #[test]
    fn bounds_follow_the_flags() {
        assert_eq!(Limits::for_flags(100, 64 << 10), Limits::default(), "the defaults fit the default flags");
        let big = Limits::for_flags(10_000, 1 << 20);
        assert!(big.bytes >= 10_000 * (2 << 20) && big.items >= 50_005, "{big:?}");
        let huge = Limits::for_flags(usize::MAX, usize::MAX);
        assert_eq!((huge.bytes, huge.items), (usize::MAX, usize::MAX));
        // What MAX_REPLY_ITEMS says a frame costs.
        assert_eq!(std::mem::size_of::<Frame>(), 40);
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(|s| Frame::SimpleString(Bytes::from(s))),
            "[a-zA-Z0-9 ]{0,20}".prop_map(|s| Frame::Error(Str::from(s))),
            any::<i64>().prop_map(Frame::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Frame::BulkString(Bytes::from(b))),
            Just(Frame::Null),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| proptest::collection::vec(inner, 0..8).prop_map(Frame::Array))
    }

    proptest! {
        /// Whatever `redis-protocol` encodes, cut anywhere, decodes back.
        #[test]
        fn encoded_frames_decode_back_however_they_are_cut(
            frames in proptest::collection::vec(frame(), 1..6),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                extend_encode(&mut wire, frame, false).unwrap();
            }
            // Slices of one buffer, as the link's reads are.
            let wire = wire.freeze();
            let mut decoder = Decoder::default();
            let (mut got, mut at, mut cuts) = (Vec::new(), 0, cuts.into_iter().cycle());
            while at < wire.len() {
                let n = cuts.next().unwrap_or(1).min(wire.len() - at);
                let mut budget = usize::MAX;
                let used = decoder.feed(&wire.slice(at..at + n), &mut got, &mut budget).unwrap();
                prop_assert_eq!(used, n);
                at += n;
            }
            prop_assert_eq!(got, frames);
            prop_assert!(!decoder.is_mid_reply());
        }
    }
}
