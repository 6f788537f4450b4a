//! The loop's own TLS buffers, one set per thread (the server's loop is one thread): the
//! receive buffer every server-side connection reads its socket into, and the send buffers
//! its writes are gathered and encrypted in. A connection keeps bytes of its own only while
//! they cannot be finished in the call that brought them (see `server_stream.rs`), so an idle
//! connection holds none.
//!
//! Thread-local rather than handed down by the hub, so that a connection's stream still reads
//! and writes like its socket: the connection state machine, tungstenite and the outbox run
//! over it unchanged.

use std::cell::Cell;

/// The largest TLS record on the wire: a 5-byte header and up to 2^14 + 2,048 bytes (RFC
/// 5246 6.2.3; TLS 1.3 allows less).
pub const MAX_RECORD: usize = 5 + 16_384 + 2_048;

/// Room for the largest handshake message rustls accepts (64 KiB, joined from several records)
/// with the next record behind it: what one connection may have to hold before rustls can go on.
pub const RECEIVE_CAPACITY: usize = 0x1_0000 + MAX_RECORD;

thread_local! {
    static RECEIVE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SEND: Cell<SendBuffers> = const { Cell::new(SendBuffers { plain: Vec::new(), sealed: Vec::new() }) };
}

/// The send buffers: plaintext gathered from several slices, and the records made of it.
#[derive(Default)]
pub struct SendBuffers {
    pub plain: Vec<u8>,
    pub sealed: Vec<u8>,
}

/// Runs `f` with the receive buffer, [`RECEIVE_CAPACITY`] bytes long.
pub fn with_receive<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RECEIVE.with(|cell| {
        // Taken out for the call: a nested call would find it empty and make its own.
        let mut buffer = cell.take();
        buffer.resize(RECEIVE_CAPACITY, 0);
        let result = f(&mut buffer);
        cell.set(buffer);
        result
    })
}

/// Runs `f` with the send buffers: `plain` empty, `sealed` as the last call left it.
pub fn with_send<R>(f: impl FnOnce(&mut SendBuffers) -> R) -> R {
    SEND.with(|cell| {
        let mut buffers = cell.take();
        buffers.plain.clear();
        let result = f(&mut buffers);
        cell.set(buffers);
        result
    })
}
