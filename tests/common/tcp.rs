//! What the kernel knows of a TCP connection on this host, from `/proc/net/tcp`: its state and
//! the bytes queued each way. A test that must know that bytes (or a FIN) have *reached* a
//! process, not only left another, asks here rather than sleeping: a stopped process's kernel
//! still receives and acknowledges, and says so.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::WAIT;

/// The peer has closed its side; this end has not (yet) read the EOF and closed.
pub const CLOSE_WAIT: u8 = 0x08;

/// One TCP socket as the kernel sees it.
#[derive(Debug, Clone, Copy)]
pub struct TcpState {
    /// `TCP_ESTABLISHED` is 1, [`CLOSE_WAIT`] 8 (include/net/tcp_states.h).
    pub state: u8,
    /// Bytes sent and not yet acknowledged by the peer's kernel.
    pub unacked: u64,
    /// Bytes received and not yet read by the process.
    pub unread: u64,
}

/// `/proc/net/tcp`'s spelling of an IPv4 address: the address as the kernel stores it (network
/// order) printed as a native integer, then the port.
fn proc_spelling(addr: SocketAddr) -> String {
    let IpAddr::V4(ip) = addr.ip() else { panic!("only IPv4 sockets are looked up: {addr}") };
    format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), addr.port())
}

/// The socket whose own address is `local` and whose peer is `peer`, if the kernel has it.
pub fn tcp_state(local: SocketAddr, peer: SocketAddr) -> Option<TcpState> {
    let (local, peer) = (proc_spelling(local), proc_spelling(peer));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux only)");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&peer.as_str()) {
            return None;
        }
        let (tx, rx) = fields[4].split_once(':')?;
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        Some(TcpState { state: u8::from_str_radix(fields[3], 16).ok()?, unacked: hex(tx)?, unread: hex(rx)? })
    })
}

/// Waits (bounded by [`WAIT`]) until the socket `local` → `peer` is as `ready` wants; `what`
/// names the wait in the failure.
#[track_caller]
pub fn wait_tcp(what: &str, local: SocketAddr, peer: SocketAddr, ready: impl Fn(&TcpState) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = tcp_state(local, peer);
        if state.as_ref().is_some_and(&ready) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; the socket {local} -> {peer}: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
