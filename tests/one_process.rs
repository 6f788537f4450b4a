//! One process behaves exactly as before the broker seam: these pin down what the commit before
//! it (661f374) did where the seam once changed it (the order of a kick's notices, the answers to
//! a name that cannot be a nick, a binary message's line and frame kept together).

mod common;

use common::{hs256, recv_text, recv_until, send, TempDir, TestServer};
use serde_json::json;

const SECRET: &[u8] = b"a test secret that is long enough!";

/// Before the seam, `/kick` in one process carried out the kick first (the kicked member's
/// leave was announced, to the moderator too, from inside the close) and told the moderator
/// after: `*** alice left lobby (kicked by root)` then `*** alice was kicked`. Through the
/// LocalBroker, the moderator's `Reached` answer is handed over in the same exchange as the
/// `Announce` of the leave, ahead of it, so the order is reversed.
#[test]
fn a_moderator_hears_the_kicked_member_leave_before_being_told_it_was_kicked() {
    let keys = TempDir::new("review-kick-order");
    let secret = keys.file("secret", SECRET);
    let server = TestServer::start(&["--jwt-secret", &secret]);
    let now = common::unix_now();
    let root_token = hs256(SECRET, json!({"sub": "root", "exp": now + 600, "role": "admin"}));
    let alice_token = hs256(SECRET, json!({"sub": "alice", "exp": now + 600}));
    let mut root = server.connect(&format!("/?token={root_token}"));
    recv_until(&mut root, |t| t.starts_with("*** welcome"));
    let mut alice = server.connect(&format!("/?token={alice_token}"));
    recv_until(&mut alice, |t| t.starts_with("*** welcome"));
    recv_until(&mut root, |t| t == "*** alice joined lobby");

    send(&mut root, "/kick alice");
    common::expect_close(&mut alice);
    let first = recv_text(&mut root);
    let second = recv_text(&mut root);
    assert_eq!(
        [first.as_str(), second.as_str()],
        ["*** alice left lobby (kicked by root)", "*** alice was kicked"],
        "the order one process had before the seam"
    );
}

/// Before the seam, `/kick` of a name that cannot be a nick said there is no such nick, and
/// `/ban` of one said `cannot ban "NAME": WHY`; now both say `cannot /VERB "NAME": WHY`.
#[test]
fn moderating_a_name_that_cannot_be_a_nick_answers_as_before() {
    let keys = TempDir::new("review-kick-invalid");
    let secret = keys.file("secret", SECRET);
    let server = TestServer::start(&["--jwt-secret", &secret]);
    let now = common::unix_now();
    let root_token = hs256(SECRET, json!({"sub": "root", "exp": now + 600, "role": "admin"}));
    let mut root = server.connect(&format!("/?token={root_token}"));
    recv_until(&mut root, |t| t.starts_with("*** welcome"));
    send(&mut root, "/kick a:b");
    let kick = recv_until(&mut root, |t| t.starts_with("*** error"));
    send(&mut root, "/ban a:b 1h");
    let ban = recv_until(&mut root, |t| t.starts_with("*** error"));
    assert_eq!(
        [kick.as_str(), ban.as_str()],
        ["*** error: no such nick: a:b", "*** error: cannot ban \"a:b\": must not contain ':'"]
    );
}

/// PROTOCOL.md: binary messages "arrive as binary frames, each right after its `binary`
/// object" (`*** binary message from NICK (N bytes)` in text). Through the LocalBroker the
/// line and the frame are two notices, and the hub carries out each notice's effects, slow
/// readers' cut-offs included, before the next: a reader pushed over `--max-outbound` by the
/// line leaves, its `left` is announced (a nested exchange) and delivered to the room between
/// the line and its frame. Before the seam both were queued in one batch, the cut-off after.
#[test]
fn a_binary_frame_comes_right_after_its_line_even_when_a_slow_reader_is_cut_off() {
    use tungstenite::Message;
    let server = TestServer::start(&[
        "--max-message-size",
        "1KiB",
        "--max-outbound",
        "8KiB",
        "--max-messages-per-sec",
        "0",
    ]);
    // A reader that never reads, with a tiny receive window so the server's queue fills.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    let (mut slow, _) = tungstenite::client(server.url("/?nick=slow"), stream).expect("handshake");
    recv_until(&mut slow, |t| t == "*** slow joined lobby");
    let mut watcher = server.chat_client("watcher");
    let mut sender = server.chat_client("sender");
    recv_until(&mut watcher, |t| t == "*** sender joined lobby");
    let reader = std::thread::spawn(move || loop {
        match sender.read() {
            Ok(_) => {}
            Err(_) => return,
        }
    });
    let writer = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            let mut drain = stream.try_clone().unwrap();
            let (mut ws, _) = tungstenite::client(format!("ws://{addr}/?nick=pusher"), stream).unwrap();
            // Everything the server sends the pusher is read and thrown away, so it is never
            // the slow one.
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while matches!(std::io::Read::read(&mut drain, &mut buf), Ok(n) if n > 0) {}
            });
            for _ in 0..300_000 {
                if ws.send(Message::binary(vec![7u8])).is_err() {
                    return;
                }
            }
        })
    };
    let mut previous: Option<String> = None;
    let mut seen = Vec::new();
    watcher.get_mut().set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    while let Ok(message) = watcher.read() {
        if let Some(line) = previous.take() {
            assert!(
                matches!(message, Message::Binary(_)),
                "{line:?} was followed by {message:?}; last lines: {:?}",
                &seen[seen.len().saturating_sub(4)..]
            );
        }
        match &message {
            Message::Text(t) if t.starts_with("*** binary message from") => previous = Some(t.to_string()),
            Message::Text(t) => seen.push(t.to_string()),
            _ => {}
        }
    }
    assert!(seen.iter().any(|t| t.contains(" left lobby")), "nobody was cut off: {seen:?}");
    drop(writer);
    drop(reader);
}
