//! Fan-out: queuing one encoded frame to many connections, the list of connections to flush
//! at the end of the loop turn, and the verdict on slow readers.
//!
//! A broadcast is framed once (see [`frame`](crate::frame)) and the same `Bytes` pushed to
//! every recipient's outbox: a reference-count increment each, no copy. Recipients that
//! negotiated permessage-deflate share a compressed frame the same way, made once when the
//! first of them is queued (see [`Outgoing`]). Nothing is written
//! while a turn's messages are being dispatched; each recipient is listed once ("dirty") and
//! flushed with one vectored write at the end of the turn, so all the broadcasts of one turn
//! leave together.
//!
//! **Slow readers.** A client may have at most `--max-outbound` bytes queued. A slow reader is
//! one whose *socket* refuses bytes, not one that was sent a burst in the last microsecond: when
//! a frame would take a recipient over the limit, its queue is first written to its socket, and
//! only if the limit is still exceeded is it judged too slow. It is then listed, and the server
//! cuts it off once the current batch is queued (close 1008). Connections that are not open, or
//! already closing, receive nothing.

use slab::Slab;

use crate::connection::{Connection, Flush, Stream};
use crate::deflate::{Deflation, Outgoing};
use crate::store::WriteBarrier;

/// The turn's flush list and slow-reader verdicts.
#[derive(Debug)]
pub struct FanOut {
    max_outbound: usize,
    /// Connections with queued output, to flush at the end of this turn.
    dirty: Vec<usize>,
    /// Readers found over `--max-outbound`, to cut off once the current batch is queued.
    too_slow: Vec<usize>,
    /// Bytes written to clients so far (before TLS): every flush goes through [`Self::flush`].
    pub bytes_written: u64,
    /// History changes are made durable before any write (`--data-dir`; see `crate::store`).
    pub barrier: WriteBarrier,
    /// The compression every message shares (see `crate::deflate`).
    pub deflation: Deflation,
}

impl FanOut {
    pub fn new(max_outbound: usize, deflation: Deflation) -> Self {
        Self {
            deflation,
            max_outbound,
            dirty: Vec::new(),
            too_slow: Vec::new(),
            bytes_written: 0,
            barrier: WriteBarrier::default(),
        }
    }

    /// Lists a connection for this turn's flush (once).
    pub fn mark_dirty<S: Stream>(&mut self, key: usize, conn: &mut Connection<S>) {
        if conn.mark_dirty() {
            self.dirty.push(key);
        }
    }

    /// Queues `message` for one client, in the frame it negotiated (compressed or not); false
    /// if it did not take it (not open, or too slow).
    pub fn queue<S: Stream>(
        &mut self,
        conns: &mut Slab<Connection<S>>,
        key: usize,
        message: &mut Outgoing,
    ) -> bool {
        let Some(conn) = conns.get_mut(key) else {
            return false;
        };
        if !conn.accepts_messages() {
            return false;
        }
        let frame = message.for_window(conn.deflate_window(), &mut self.deflation);
        // A frame always goes to an empty queue, whatever its size: only a backlog is judged,
        // by its bytes and by its frames (see `outbox::MAX_CHUNKS`).
        let (max, len) = (self.max_outbound, frame.len());
        let over =
            |conn: &Connection<S>| conn.queued() > 0 && (conn.queued() + len > max || !conn.has_room());
        if over(conn) {
            // Judge the socket, not the burst: write what is queued, then look again. A write
            // error is noticed (and the connection removed) by the end-of-turn flush.
            let _ = self.flush(conn);
            if over(conn) {
                self.too_slow.push(key);
                return false;
            }
        }
        conn.push(frame.clone());
        self.mark_dirty(key, conn);
        true
    }

    /// Writes a connection's queue, counting the bytes written; first commits the history
    /// changes the queue may carry (write-ahead). If that failed, nothing is written.
    pub fn flush<S: Stream>(&mut self, conn: &mut Connection<S>) -> Flush {
        if !self.barrier.before_write() {
            return Flush::Blocked;
        }
        let queued = conn.queued();
        let flushed = conn.flush();
        self.bytes_written += (queued - conn.queued()) as u64;
        flushed
    }

    /// Queues `message` for every client in `keys` (a room); returns how many took it.
    pub fn queue_to_all<S: Stream>(
        &mut self,
        conns: &mut Slab<Connection<S>>,
        keys: &[u32],
        message: &mut Outgoing,
    ) -> usize {
        keys.iter().filter(|&&key| self.queue(conns, key as usize, message)).count()
    }

    /// Lists a reader as too slow, for a reason found outside fan-out.
    pub fn judge_too_slow(&mut self, key: usize) {
        self.too_slow.push(key);
    }

    /// The next connection to flush; each is listed once per turn.
    pub fn next_dirty(&mut self) -> Option<usize> {
        self.dirty.pop()
    }

    /// The next reader found too slow.
    pub fn next_too_slow(&mut self) -> Option<usize> {
        self.too_slow.pop()
    }

    /// Drops the lists' capacity (all connections are gone).
    pub fn release_memory(&mut self) {
        self.dirty = Vec::new();
        self.too_slow = Vec::new();
    }
}
