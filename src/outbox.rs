//! A connection's outgoing byte queue: shared immutable chunks, flushed with vectored writes.
//!
//! A broadcast frame is encoded once into a [`Bytes`] and the same buffer is pushed to every
//! recipient's outbox (a reference-count increment, not a copy). Flushing hands up to
//! [`MAX_IOVECS`] chunks to one `writev`, so everything queued during one poll iteration leaves
//! in as few syscalls as the socket allows. The byte total is tracked so the server can cut off
//! a reader that falls too far behind (see `--max-outbound`).

use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};

/// Chunks handed to one vectored write (Linux allows 1024; 64 already amortises the syscall).
pub const MAX_IOVECS: usize = 64;

/// Most chunks one outbox holds: a reader this many frames behind is too slow, whatever their
/// bytes (the fan-out checks [`Outbox::has_room`]), so the ring of handles it keeps (32 bytes
/// each, outside the `--max-outbound` count) stays within 512 KiB.
pub const MAX_CHUNKS: usize = 1 << 14;

/// The ring's first allocation, in chunks.
const FIRST_SLOTS: usize = 4;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket would block; bytes remain queued.
    Partly,
}

/// A ring of chunks: 24 bytes in every connection, and no allocation while it is empty (most
/// connections are idle most of the time, and one small allocation per burst is far cheaper
/// than the write that drains it). A partly written front chunk is advanced in place.
#[derive(Debug, Default)]
pub struct Outbox {
    /// `len` chunks from `head`, wrapping; the slots' count is a power of two.
    slots: Box<[Option<Bytes>]>,
    head: u16,
    len: u16,
    /// Bytes queued and not yet written (`--max-outbound` and `--max-message-size` are capped
    /// so that this fits, see `settings.rs`).
    queued: u32,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued as usize
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether another chunk fits without going over [`MAX_CHUNKS`].
    pub fn has_room(&self) -> bool {
        self.has_room_for(1)
    }

    /// Whether `n` more chunks fit without going over [`MAX_CHUNKS`].
    pub fn has_room_for(&self, n: usize) -> bool {
        usize::from(self.len) + n <= MAX_CHUNKS
    }

    /// Appends a chunk (shared, not copied). Past [`MAX_CHUNKS`] it is copied onto the last:
    /// only the server's own few frames get there (the fan-out refuses a reader that far
    /// behind, and a connection is not read, so answers no pings, while its queue has no room
    /// for a turn's frames).
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.queued = self.queued.saturating_add(u32::try_from(chunk.len()).unwrap_or(u32::MAX));
        if !self.has_room() {
            let last = self.slot(usize::from(self.len) - 1);
            let mut joined = BytesMut::with_capacity(last.as_ref().map_or(0, Bytes::len) + chunk.len());
            joined.extend_from_slice(last.as_deref().unwrap_or_default());
            joined.extend_from_slice(&chunk);
            *last = Some(joined.freeze());
            return;
        }
        if usize::from(self.len) == self.slots.len() {
            self.grow();
        }
        *self.slot(usize::from(self.len)) = Some(chunk);
        self.len += 1;
    }

    /// Drops every chunk after the front one (which may be partly written: the byte stream
    /// stays well-framed). Used before a final close frame to a reader cut off for being too
    /// slow.
    pub fn truncate_unstarted(&mut self) {
        while self.len > 1 {
            self.len -= 1;
            self.slot(usize::from(self.len)).take();
        }
        self.queued = self.front().map_or(0, |front| front.len() as u32);
        self.release_memory_if_idle();
    }

    /// Writes queued chunks until done or the sink would block. Other errors are returned.
    pub fn flush_to<W: Write>(&mut self, sink: &mut W) -> io::Result<Flushed> {
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = usize::from(self.len).min(MAX_IOVECS);
            // The ring's chunks in order: from the head to the end, then from the start.
            let (head, end) = (usize::from(self.head), usize::from(self.head) + count);
            let first = &self.slots[head..end.min(self.slots.len())];
            let wrapped = &self.slots[..end.saturating_sub(self.slots.len())];
            for (slice, chunk) in slices.iter_mut().zip(first.iter().chain(wrapped)) {
                *slice = IoSlice::new(chunk.as_deref().unwrap_or_default());
            }
            // One chunk (a chat's pace: one frame a turn) goes by `write`, which on a TCP socket
            // is `send`: it skips `writev`'s file layer and iovec copy, 10-17% of the server's
            // CPU per delivery at that pace (docs/BENCHMARKS.md).
            let written = match count {
                1 => sink.write(&slices[0]),
                _ => sink.write_vectored(&slices[..count]),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Partly),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.release_memory_if_idle();
        Ok(Flushed::All)
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written as u32;
        while let Some(front) = self.front() {
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.slot(0).take();
            self.head = ((usize::from(self.head) + 1) & (self.slots.len() - 1)) as u16;
            self.len -= 1;
        }
    }

    fn front(&mut self) -> Option<&mut Bytes> {
        if self.len == 0 {
            return None;
        }
        self.slot(0).as_mut()
    }

    /// The slot `i` places after the head.
    fn slot(&mut self, i: usize) -> &mut Option<Bytes> {
        let mask = self.slots.len() - 1;
        &mut self.slots[(usize::from(self.head) + i) & mask]
    }

    /// Doubles the ring, its chunks moved to the front in order.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(FIRST_SLOTS);
        let mut slots: Vec<Option<Bytes>> = Vec::with_capacity(size);
        slots.extend((0..usize::from(self.len)).map(|i| self.slot(i).take()));
        slots.resize_with(size, || None);
        (self.slots, self.head) = (slots.into_boxed_slice(), 0);
    }

    /// An idle connection keeps no ring at all.
    fn release_memory_if_idle(&mut self) {
        if self.len == 0 && !self.slots.is_empty() {
            (self.slots, self.head) = (Box::default(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most `budget` bytes in total, then would block.
    struct Trickle {
        got: Vec<u8>,
        budget: usize,
        calls: usize,
        /// Of the calls, those made with `write` (one slice).
        plain_writes: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.plain_writes += 1;
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.budget - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_chunk_goes_by_write_and_several_by_one_writev() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"one frame"));
        let mut sink = Trickle { got: vec![], budget: usize::MAX, calls: 0, plain_writes: 0 };
        assert_eq!(out.flush_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!((sink.calls, sink.plain_writes), (1, 1));
        out.push(Bytes::from_static(b" two"));
        out.push(Bytes::from_static(b" three"));
        assert_eq!(out.flush_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!((sink.calls, sink.plain_writes), (2, 1));
        assert_eq!(sink.got, b"one frame two three");
    }

    #[test]
    fn flushes_in_order_across_partial_writes() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::new());
        out.push(Bytes::from_static(b"world"));
        assert_eq!(out.queued(), 11);
        let mut sink = Trickle { got: vec![], budget: 8, calls: 0, plain_writes: 0 };
        assert_eq!(out.flush_to(&mut sink).unwrap(), Flushed::Partly);
        assert_eq!(out.queued(), 3);
        sink.budget = 100;
        assert_eq!(out.flush_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!(sink.got, b"hello world");
        assert!(out.is_empty());
    }

    #[test]
    fn many_chunks_coalesce_into_few_writes() {
        let mut out = Outbox::new();
        let shared = Bytes::from_static(b"x");
        for _ in 0..(MAX_IOVECS * 2) {
            out.push(shared.clone());
        }
        let mut sink = Trickle { got: vec![], budget: usize::MAX, calls: 0, plain_writes: 0 };
        out.flush_to(&mut sink).unwrap();
        assert_eq!(sink.calls, 2);
        assert_eq!(sink.got.len(), MAX_IOVECS * 2);
    }

    #[test]
    fn the_ring_keeps_order_across_wraps_and_growth_and_frees_itself_when_empty() {
        let mut out = Outbox::new();
        let mut sink = Trickle { got: vec![], budget: 0, calls: 0, plain_writes: 0 };
        let mut expected = Vec::new();
        for round in 0..50u8 {
            // Pushes outpace writes, so the head wraps while the ring grows.
            for i in 0..(round % 7 + 1) {
                out.push(Bytes::from(vec![round, i]));
                expected.extend([round, i]);
            }
            sink.budget = 3;
            out.flush_to(&mut sink).unwrap();
        }
        sink.budget = usize::MAX;
        assert_eq!(out.flush_to(&mut sink).unwrap(), Flushed::All);
        assert_eq!(sink.got, expected);
        assert!(out.slots.is_empty(), "an emptied queue keeps no ring");
        assert_eq!(std::mem::size_of::<Outbox>(), 24);
    }

    #[test]
    fn past_the_most_chunks_a_chunk_is_joined_to_the_last() {
        let mut out = Outbox::new();
        for _ in 0..MAX_CHUNKS {
            out.push(Bytes::from_static(b"a"));
        }
        assert!(!out.has_room());
        out.push(Bytes::from_static(b"bc"));
        assert_eq!((usize::from(out.len), out.queued()), (MAX_CHUNKS, MAX_CHUNKS + 2));
        let mut sink = Trickle { got: vec![], budget: usize::MAX, calls: 0, plain_writes: 0 };
        out.flush_to(&mut sink).unwrap();
        assert!(sink.got.ends_with(b"aabc") && sink.got.len() == MAX_CHUNKS + 2);
    }

    #[test]
    fn truncate_keeps_the_partly_written_chunk_only() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"abcd"));
        out.push(Bytes::from_static(b"efgh"));
        let mut sink = Trickle { got: vec![], budget: 2, calls: 0, plain_writes: 0 };
        out.flush_to(&mut sink).unwrap();
        out.truncate_unstarted();
        assert_eq!(out.queued(), 2);
        out.push(Bytes::from_static(b"!"));
        sink.budget = 100;
        out.flush_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"abcd!");

        let mut untouched = Outbox::new();
        untouched.push(Bytes::from_static(b"abcd"));
        untouched.push(Bytes::from_static(b"efgh"));
        untouched.truncate_unstarted();
        assert_eq!(untouched.queued(), 4, "the front chunk stays, started or not");
    }
}
