//! Drivers shared by the property tests (`tests/properties.rs`) and the fuzz targets
//! (`fuzz/`): each puts arbitrary input through a [`Simulation`] and panics if the server
//! breaks a rule that must hold whatever a client sends. A panic here is a bug in the server.
//!
//! The rules checked: the server answers every request head (or drops it at the handshake
//! timeout); it never panics; the chat stays consistent; no connection ever holds more than
//! `--max-outbound` bytes; and a bystander whose socket accepts everything is never cut off.

use std::time::Duration;

use super::{ClientIx, Simulation};
use crate::config::Config;
use crate::settings::Settings;

/// Limits small enough for generated input to reach them: 4 KiB messages, 8 KiB queues, 50
/// messages a second, announcements only in rooms of up to 2.
pub fn small_limits() -> Settings {
    let mut config = Config::with_addr("127.0.0.1:0".parse().expect("address"));
    config.max_message_size = 4096;
    config.max_outbound = 8192;
    config.max_messages_per_sec = 50;
    config.announce_limit = 2;
    config.settings().expect("valid limits")
}

/// One connection sends `request`; returns the HTTP status it got (101 for an upgrade), or
/// None if the head never completed, in which case the server must drop it at the
/// handshake timeout.
pub fn judge_request(settings: Settings, request: &[u8]) -> Option<u16> {
    let mut sim = Simulation::new(settings);
    let client = sim.connect(request);
    sim.settle();
    let status = sim.status(client);
    if status.is_none() {
        let timeout = sim.settings().handshake_timeout;
        sim.advance(timeout + Duration::from_millis(1));
        assert!(!sim.is_connected(client), "an incomplete head outlived the handshake timeout");
    }
    status
}

/// The bystanders of [`frames_after_handshake`].
struct Room {
    reader: ClientIx,
    non_reader: ClientIx,
}

impl Room {
    /// Two chat members besides the client under test: one whose socket accepts everything,
    /// one whose socket accepts nothing once it has joined.
    fn join(sim: &mut Simulation) -> Self {
        let reader = sim.upgrade_offering_deflate("/?nick=reader");
        let non_reader = sim.upgrade("/?nick=sleeper");
        sim.set_window(non_reader, Some(0));
        Self { reader, non_reader }
    }
}

/// After a valid handshake on `path`, a client sends `bytes`, which the server reads in pieces
/// of at most `piece` bytes (0: as they come). Two bystanders sit in the chat's lobby. Checks
/// every rule in the module doc, turn by turn, then lets every timeout pass. Returns the close
/// code the client received, if any.
pub fn frames_after_handshake(settings: Settings, path: &str, bytes: &[u8], piece: usize) -> Option<u16> {
    frames_after(settings, path, false, bytes, piece)
}

/// [`frames_after_handshake`] for a client that negotiated permessage-deflate (as has the
/// reading bystander, so what the client says reaches it compressed): the bytes go through the
/// inflating shim, and RSV1 frames are compressed messages.
pub fn frames_after_deflate_handshake(
    settings: Settings,
    path: &str,
    bytes: &[u8],
    piece: usize,
) -> Option<u16> {
    frames_after(settings, path, true, bytes, piece)
}

fn frames_after(settings: Settings, path: &str, deflate: bool, bytes: &[u8], piece: usize) -> Option<u16> {
    let max_outbound = settings.max_outbound;
    let mut sim = Simulation::new(settings);
    let room = Room::join(&mut sim);
    let client = if deflate { sim.upgrade_offering_deflate(path) } else { sim.upgrade(path) };
    sim.set_piece(client, piece);
    // Feed the bytes over several turns, as a network would.
    for chunk in bytes.chunks(1024) {
        sim.send(client, chunk);
        sim.step();
        check_turn(&sim, &[room.reader, room.non_reader, client], max_outbound);
    }
    sim.settle();
    check_turn(&sim, &[room.reader, room.non_reader, client], max_outbound);
    assert_ne!(
        sim.close_code(room.reader),
        Some(1008),
        "a reader whose socket accepts everything was cut off"
    );
    assert!(sim.is_connected(room.reader), "a healthy reader was dropped");
    let code = sim.close_code(client);
    let idle = sim.settings().idle_timeout;
    sim.advance(idle * 2);
    sim.advance(idle * 2);
    assert!(!sim.is_connected(room.non_reader), "a client that never reads outlived its timeouts");
    code
}

/// Rules that hold after every turn.
fn check_turn(sim: &Simulation, clients: &[ClientIx], max_outbound: usize) {
    sim.hub().chat().check_invariants();
    for &client in clients {
        let queued = sim.queued(client);
        assert!(
            queued <= max_outbound,
            "client {client} holds {queued} bytes, over --max-outbound {max_outbound}"
        );
    }
}

/// Chat lines from four clients, `(client, line)`, as text messages; a client whose
/// connection ended (after `/quit`) reconnects asking for its next line as its nick. The chat
/// must stay consistent after every line. Returns how many text messages were delivered.
pub fn chat_lines(lines: &[(usize, &str)]) -> usize {
    let mut sim = Simulation::new(small_limits());
    let mut clients: Vec<ClientIx> = (0..4).map(|_| sim.upgrade("/")).collect();
    for (client, line) in lines {
        let slot = client % clients.len();
        if sim.is_connected(clients[slot]) {
            sim.send_text(clients[slot], line);
        } else {
            clients[slot] = sim.connect(&super::upgrade_request(&format!("/?nick={}", percent_encode(line))));
        }
        sim.settle();
        sim.hub().chat().check_invariants();
    }
    clients.iter().map(|&c| sim.texts(c).len()).sum()
}

/// Every byte as `%XX`: any line becomes a valid query value.
fn percent_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}
