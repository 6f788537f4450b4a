//! A connection stops reading its socket after a read that came back short, until the poll
//! reports more (issue 29: no `EAGAIN` read after every message). What that must not cost: the
//! end of a client that sent its last message and closed its side at once, which the poll may
//! report in the same event as the data, is still seen, and a burst is read whole.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::{expect_eof, raw_handshake, read_frame_with, TestServer};
use wschat::wire::client_frame;

const KEY: Option<[u8; 4]> = Some([0x51, 0x7e, 0x0b, 0x3c]);

#[test]
fn a_last_message_and_the_close_of_the_socket_sent_together_are_both_seen() {
    let server = TestServer::start(&[]);
    for i in 0..20 {
        let mut stream = raw_handshake(&server, "/echo");
        let last = format!("last words {i}");
        // The frame and the FIN back to back: usually one readiness event carries both.
        stream.write_all(&client_frame(0x81, last.as_bytes(), KEY)).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        // The server sees the end and closes (whether the echo got out before it dropped the
        // connection is another matter): without reading on to EOF it would hold the socket
        // until its idle timeout, a minute, past the test's read timeout.
        expect_eof(&mut stream);
    }
}

#[test]
fn a_burst_of_small_messages_is_read_whole() {
    let server = TestServer::start(&[]);
    let mut stream = raw_handshake(&server, "/echo");
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(client_frame(0x81, format!("{i}").as_bytes(), KEY));
    }
    stream.write_all(&burst).unwrap();
    for i in 0..500 {
        let (_, payload) = read_frame_with(|buf| stream.read_exact(buf)).expect("every echo");
        assert_eq!(payload, format!("{i}").into_bytes());
    }
}

/// A burst larger than one turn's share, sent with the FIN: the turns after the first still
/// read it (the poll will not report the end again), so the server reaches the end and closes
/// rather than holding the socket until its idle timeout.
#[test]
fn a_burst_past_a_turn_s_share_sent_with_the_fin_is_read_to_its_end() {
    let server = TestServer::start(&[]);
    for _ in 0..5 {
        let mut stream = raw_handshake(&server, "/echo");
        let mut burst = Vec::new();
        for i in 0..500 {
            burst.extend(client_frame(0x81, format!("{i}").as_bytes(), KEY));
        }
        stream.write_all(&burst).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        expect_eof(&mut stream);
    }
}
