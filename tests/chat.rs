//! Chat behaviour over real sockets against the real binary: broadcast, ordering, commands,
//! binary relay, quitting. Every scenario runs against one process and against two processes
//! sharing a Redis, with its clients spread over both (`both_modes!`, `tests/common/chat.rs`).

mod common;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

both_modes!(broadcast_reaches_every_client_including_the_sender);
fn broadcast_reaches_every_client_including_the_sender(chat: &Chat) {
    let mut room = chat.chat_room(&["alice", "bob", "carol"]);
    send(&mut room[1], "hello everyone");
    for ws in room.iter_mut() {
        assert_eq!(recv_text(ws), "bob: hello everyone");
    }
}

both_modes!(guests_get_unique_nicks);
fn guests_get_unique_nicks(chat: &Chat) {
    let mut first = chat.connect("/");
    let mut second = chat.connect("/");
    let a = recv_text(&mut first);
    let b = recv_text(&mut second);
    assert!(a.starts_with("*** welcome, you are guest-"), "{a}");
    assert!(b.starts_with("*** welcome, you are guest-"), "{b}");
    assert_ne!(a, b);
}

both_modes!(concurrent_senders_are_seen_in_the_same_order_by_everyone);
fn concurrent_senders_are_seen_in_the_same_order_by_everyone(chat: &Chat) {
    const SENDERS: usize = 3;
    const EACH: usize = 200;
    let mut receivers = chat.chat_room(&["r0", "r1", "r2", "s0", "s1", "s2"]);
    let senders = receivers.split_off(3);
    let threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            std::thread::spawn(move || {
                for n in 0..EACH {
                    ws.write(Message::text(format!("m{n}"))).unwrap();
                    if n % 16 == 0 {
                        ws.flush().unwrap();
                    }
                }
                ws.flush().unwrap();
                // Hold the connection until our own last message comes back.
                recv_until(&mut ws, |t| t == format!("s{i}: m{}", EACH - 1));
            })
        })
        .collect();
    let orders: Vec<Vec<String>> = receivers
        .iter_mut()
        .map(|ws| (0..SENDERS * EACH).map(|_| recv_until(ws, |t| !t.starts_with("*** "))).collect())
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for order in &orders {
        assert_eq!(order, &orders[0], "every receiver sees one consistent order");
    }
    for i in 0..SENDERS {
        let mine: Vec<&String> = orders[0].iter().filter(|t| t.starts_with(&format!("s{i}: "))).collect();
        let expected: Vec<String> = (0..EACH).map(|n| format!("s{i}: m{n}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "each sender's messages arrive in its order");
    }
}

both_modes!(nick_join_rooms_who_and_room_isolation);
fn nick_join_rooms_who_and_room_isolation(chat: &Chat) {
    let [mut alice, mut bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();

    send(&mut alice, "/nick alicia");
    assert_eq!(recv_text(&mut bob), "*** alice is now known as alicia");
    assert_eq!(recv_text(&mut alice), "*** alice is now known as alicia");
    send(&mut bob, "/nick ALICIA");
    assert_eq!(recv_text(&mut bob), "*** error: nick \"ALICIA\" refused: already in use");

    send(&mut alice, "/join dev");
    assert_eq!(recv_text(&mut alice), "*** alicia joined dev");
    assert_eq!(recv_text(&mut bob), "*** alicia left lobby (joined dev)");
    send(&mut bob, "/rooms");
    assert_eq!(recv_text(&mut bob), "*** rooms: dev (1), lobby (1)");
    send(&mut bob, "only lobby hears this");
    assert_eq!(recv_text(&mut bob), "bob: only lobby hears this");
    send(&mut alice, "/who");
    assert_eq!(recv_text(&mut alice), "*** in dev (1): alicia", "alicia did not hear the lobby");
    send(&mut bob, "/join dev");
    assert_eq!(recv_text(&mut alice), "*** bob joined dev");
    send(&mut bob, "/who");
    assert_eq!(recv_until(&mut bob, |t| t.starts_with("*** in ")), "*** in dev (2): alicia, bob");
}

both_modes!(me_msg_and_errors);
fn me_msg_and_errors(chat: &Chat) {
    let [mut alice, mut bob, mut carol]: [Client; 3] =
        chat.chat_room(&["alice", "bob", "carol"]).try_into().ok().unwrap();
    send(&mut alice, "/me waves");
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(recv_text(ws), "* alice waves");
    }
    send(&mut alice, "/msg bob a secret");
    assert_eq!(recv_text(&mut bob), "[PM from alice] a secret");
    assert_eq!(recv_text(&mut alice), "[PM to bob] a secret");
    send(&mut alice, "/msg nobody hi");
    assert_eq!(recv_text(&mut alice), "*** error: no such nick: nobody");
    send(&mut alice, "/bogus");
    assert_eq!(recv_text(&mut alice), "*** error: unknown command /bogus; type /help for the list");
    send(&mut alice, "/help");
    let help = recv_text(&mut alice);
    assert!(help.contains("/join ROOM") && help.contains("/nick NAME"), "{help}");
    assert!(!help.contains("/token") && !help.contains("/ban"), "no keys, no moderators: {help}");
    // Carol saw none of the private traffic: her next message is the next public one.
    send(&mut bob, "public again");
    assert_eq!(recv_text(&mut carol), "bob: public again");
}

both_modes!(a_line_sent_with_its_line_ending_as_websocat_sends_it_is_chat);
fn a_line_sent_with_its_line_ending_as_websocat_sends_it_is_chat(chat: &Chat) {
    let [mut alice, mut bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();
    send(&mut alice, "hello from websocat\n");
    send(&mut alice, "and from a CRLF tool\r\n");
    for ws in [&mut alice, &mut bob] {
        assert_eq!(recv_text(ws), "alice: hello from websocat");
        assert_eq!(recv_text(ws), "alice: and from a CRLF tool");
    }
}

both_modes!(binary_messages_are_relayed_verbatim_to_the_room_after_a_line_naming_the_sender);
fn binary_messages_are_relayed_verbatim_to_the_room_after_a_line_naming_the_sender(chat: &Chat) {
    let [mut alice, mut bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();
    let blob: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    bob.send(Message::binary(blob.clone())).unwrap();
    for ws in [&mut alice, &mut bob] {
        assert_eq!(recv_text(ws), "*** binary message from bob (3000 bytes)");
        assert_eq!(recv(ws), Message::binary(blob.clone()));
    }
}

both_modes!(quit_closes_normally_with_the_reason_and_tells_the_room);
fn quit_closes_normally_with_the_reason_and_tells_the_room(chat: &Chat) {
    let [mut alice, mut bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();
    send(&mut bob, "/quit see you");
    assert_eq!(expect_close(&mut bob), (CloseCode::Normal, "see you".to_string()));
    assert_eq!(recv_text(&mut alice), "*** bob left lobby (quit: see you)");
    // The server completes the close handshake and closes the TCP connection.
    let _ = bob.flush();
    expect_eof(bob.get_mut());
}

both_modes!(a_client_that_disconnects_is_announced_and_its_nick_freed);
fn a_client_that_disconnects_is_announced_and_its_nick_freed(chat: &Chat) {
    let [mut alice, mut bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();
    bob.close(None).unwrap();
    let _ = bob.flush();
    assert_eq!(recv_text(&mut alice), "*** bob left lobby (closed)");
    drop(bob);
    let _bob_again = chat.chat_client("bob");
}

both_modes!(a_client_that_vanishes_without_a_close_is_announced_as_lost);
fn a_client_that_vanishes_without_a_close_is_announced_as_lost(chat: &Chat) {
    let [mut alice, bob]: [Client; 2] = chat.chat_room(&["alice", "bob"]).try_into().ok().unwrap();
    drop(bob); // TCP closed with no close frame
    assert_eq!(recv_text(&mut alice), "*** bob left lobby (connection lost)");
}
