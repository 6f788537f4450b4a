//! A connection's outgoing byte queue: shared immutable chunks, flushed with vectored writes.
//!
//! A broadcast frame is encoded once into a [`Bytes`] and the same buffer is pushed to every
//! recipient's outbox (a reference-count increment, not a copy). Flushing hands up to
//! [`MAX_IOVECS`] chunks to one `writev`, so everything queued during one poll iteration leaves
//! in as few syscalls as the socket allows. The byte total is tracked so the server can cut off
//! a reader that falls too far behind (see `--max-outbound`).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Chunks handed to one vectored write (Linux allows 1024; 64 already amortises the syscall).
pub const MAX_IOVECS: usize = 64;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket would block; bytes remain queued.
    Partly,
}

#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Appends a chunk (shared, not copied).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Drops everything not yet started, keeping only the rest of a partly written chunk so the
    /// byte stream stays well-framed. Used before a final close frame to a reader cut off for
    /// being too slow.
    pub fn truncate_unstarted(&mut self) {
        let keep = usize::from(self.front_written > 0);
        self.chunks.truncate(keep);
        self.queued = self.chunks.front().map_or(0, |c| c.len() - self.front_written);
        self.release_memory_if_idle();
    }

    /// Writes queued chunks until done or the sink would block. Other errors are returned.
    pub fn flush_to<W: Write>(&mut self, sink: &mut W) -> io::Result<Flushed> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.front_written } else { 0 };
                slices[i] = IoSlice::new(&chunk[start..]);
                count += 1;
            }
            match sink.write_vectored(&slices[..count]) {
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
        self.queued -= written;
        while let Some(front) = self.chunks.front() {
            let rest = front.len() - self.front_written;
            if written < rest {
                self.front_written += written;
                return;
            }
            written -= rest;
            self.front_written = 0;
            self.chunks.pop_front();
        }
    }

    /// An idle connection keeps no ring buffer at all: most connections are idle most of the
    /// time, and one small allocation per burst is far cheaper than the write that drained it.
    fn release_memory_if_idle(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
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
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
    fn flushes_in_order_across_partial_writes() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::new());
        out.push(Bytes::from_static(b"world"));
        assert_eq!(out.queued(), 11);
        let mut sink = Trickle { got: vec![], budget: 8, calls: 0 };
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
        let mut sink = Trickle { got: vec![], budget: usize::MAX, calls: 0 };
        out.flush_to(&mut sink).unwrap();
        assert_eq!(sink.calls, 2);
        assert_eq!(sink.got.len(), MAX_IOVECS * 2);
    }

    #[test]
    fn truncate_keeps_the_partly_written_chunk_only() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"abcd"));
        out.push(Bytes::from_static(b"efgh"));
        let mut sink = Trickle { got: vec![], budget: 2, calls: 0 };
        out.flush_to(&mut sink).unwrap();
        out.truncate_unstarted();
        assert_eq!(out.queued(), 2);
        out.push(Bytes::from_static(b"!"));
        sink.budget = 100;
        out.flush_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"abcd!");

        let mut untouched = Outbox::new();
        untouched.push(Bytes::from_static(b"abcd"));
        untouched.truncate_unstarted();
        assert!(untouched.is_empty());
    }
}
