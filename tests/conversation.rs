//! What people expect of a chat beyond its messages, against the real server over real
//! sockets, in one process and in a cluster of two (`both_modes!`, with the members on
//! different processes): typing indicators.

mod common;

use common::{both_modes, json_client, recv_json, recv_text, send, Chat};

both_modes!(typing_reaches_the_other_json_members_of_the_room);
/// JSON members on either process: Alice's `/typing` reaches Bob (through Redis in a
/// cluster) and not Alice, a second one within two seconds is dropped, and a text member is
/// told nothing.
fn typing_reaches_the_other_json_members_of_the_room(chat: &Chat) {
    let mut alice = json_client(chat.process(0), "?nick=alice");
    let _ = common::recv_through(&mut alice, "replayed");
    let mut bob = json_client(chat.process(1), "?nick=bob");
    let _ = common::recv_through(&mut bob, "replayed");
    let mut carol = chat.process(1).chat_client("carol");
    // Everyone has seen everyone's join: each hears the room from here on.
    common::recv_until(&mut carol, |line| line == "*** carol joined lobby");
    for client in [&mut alice, &mut bob] {
        loop {
            let event = recv_json(client);
            if event["type"] == "joined" && event["nick"] == "carol" {
                break;
            }
        }
    }
    send(&mut alice, "/typing");
    send(&mut alice, "/typing");
    send(&mut alice, "done typing");
    let typing = recv_json(&mut bob);
    assert_eq!(typing, serde_json::json!({"type": "typing", "room": "lobby", "nick": "alice"}));
    let next = recv_json(&mut bob);
    assert_eq!(
        (next["type"].as_str(), next["text"].as_str()),
        (Some("message"), Some("done typing")),
        "one typing only"
    );
    let own = recv_json(&mut alice);
    assert_eq!(own["text"], "done typing", "the typist is not told of itself: {own}");
    assert_eq!(recv_text(&mut carol), "alice: done typing", "a text client is told nothing of typing");
}

both_modes!(a_mention_names_members_and_reaches_one_in_another_room);
/// Alice (process 0) names Bob and Carol (process 1, in a cluster: names held elsewhere are
/// asked of Redis first): Bob, in her room, gets the message with `mentions`; Carol, in
/// another room, is told in a notice; a name nobody holds is not a mention.
fn a_mention_names_members_and_reaches_one_in_another_room(chat: &Chat) {
    let mut bob = json_client(chat.process(1), "?nick=bob");
    let _ = common::recv_through(&mut bob, "replayed");
    let mut carol = chat.process(1).connect("/?nick=Carol&room=dev");
    common::recv_until(&mut carol, |line| line == "*** Carol joined dev");
    let mut alice = json_client(chat.process(0), "?nick=alice");
    let _ = common::recv_through(&mut alice, "replayed");
    send(&mut alice, "hey @BOB and @carol, not @nobody");
    let (_, message) = common::recv_through(&mut bob, "message");
    assert_eq!(message["text"], "hey @BOB and @carol, not @nobody");
    assert_eq!(message["mentions"], serde_json::json!(["bob", "Carol"]), "{message}");
    assert_eq!(recv_text(&mut carol), "*** alice mentioned you in lobby: hey @BOB and @carol, not @nobody");
}

both_modes!(history_pages_back_before_a_message);
/// Bob (on the other process in a cluster) pages back from the newest message Alice said:
/// the older ones, oldest first, then where the page starts and that nothing older is left.
fn history_pages_back_before_a_message(chat: &Chat) {
    let mut alice = json_client(chat.process(0), "?nick=alice");
    let _ = common::recv_through(&mut alice, "replayed");
    for i in 1..=5 {
        send(&mut alice, &format!("line {i}"));
    }
    let mut last = serde_json::Value::Null;
    for _ in 1..=5 {
        last = common::recv_through(&mut alice, "message").1;
    }
    let newest = last["id"].as_str().unwrap().to_string();
    let mut bob = json_client(chat.process(1), "?nick=bob");
    let _ = common::recv_through(&mut bob, "replayed");
    send(&mut bob, &format!("/history {newest} 3"));
    let (older, done) = common::recv_through(&mut bob, "history");
    assert_eq!(common::texts(&older), ["line 2", "line 3", "line 4"]);
    assert!(older.iter().all(|m| m["older"] == true), "{older:?}");
    assert_eq!((done["count"].as_u64(), done["more"].as_bool()), (Some(3), Some(true)), "{done}");
    let first = done["first"].as_str().unwrap().to_string();
    send(&mut bob, &format!("/history {first}"));
    let (older, done) = common::recv_through(&mut bob, "history");
    assert_eq!(common::texts(&older), ["line 1"]);
    assert_eq!(done["more"], false, "{done}");
}

// One process only: --data-dir (a store of one process's own) is refused with --redis.
/// With `--data-dir`, `/history` reaches back past what memory holds (`--history 3`) to what
/// the store keeps (`--retain 8`), and again after a restart.
#[test]
fn with_a_data_dir_history_pages_back_past_memory_to_what_the_store_retains() {
    let dir = common::TempDir::new("retain");
    let flags = ["--data-dir", dir.arg(), "--history", "3", "--retain", "8"];
    let mut server = common::TestServer::start(&flags);
    let mut alice = json_client(&server, "?nick=alice");
    let _ = common::recv_through(&mut alice, "replayed");
    for i in 1..=12 {
        send(&mut alice, &format!("line {i}"));
        common::recv_through(&mut alice, "message");
    }
    let page_before = |server: &common::TestServer, nick: &str| {
        let mut bob = json_client(server, &format!("?nick={nick}"));
        let (replayed, summary) = common::recv_through(&mut bob, "replayed");
        assert_eq!(common::texts(&replayed), ["line 10", "line 11", "line 12"], "memory: --history 3");
        let _ = summary;
        let oldest = replayed[0]["id"].as_str().unwrap().to_string();
        send(&mut bob, &format!("/history {oldest} 3"));
        let (first, done) = common::recv_through(&mut bob, "history");
        assert_eq!(common::texts(&first), ["line 7", "line 8", "line 9"], "from the store");
        assert_eq!(done["more"], true);
        send(&mut bob, &format!("/history {} 50", done["first"].as_str().unwrap()));
        let (rest, done) = common::recv_through(&mut bob, "history");
        assert_eq!(common::texts(&rest), ["line 5", "line 6"], "--retain 8: lines 5 to 12");
        assert_eq!((done["more"].as_bool(), done["count"].as_u64()), (Some(false), Some(2)));
    };
    page_before(&server, "bob");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = common::TestServer::start(&flags);
    page_before(&server, "bob2");
}

#[test]
fn retain_needs_a_data_dir() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wschat-server"))
        .args(["127.0.0.1:0", "--retain", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--data-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SECRET: &[u8] = b"a test secret that is long enough!";

fn token(sub: &str) -> String {
    common::hs256(SECRET, serde_json::json!({"sub": sub, "exp": common::unix_now() + 600}))
}

both_modes!(a_read_marker_reaches_the_user_s_other_device_and_comes_back_with_it(mode));
/// Alice reads on her phone (process 0); her laptop (process 1 in a cluster) is told; once
/// both have gone, she comes back (on process 1) and her replay says where she read up to.
fn a_read_marker_reaches_the_user_s_other_device_and_comes_back_with_it(mode: common::Mode) {
    let dir = common::TempDir::new("read-markers");
    let secret = dir.file("secret", SECRET);
    let chat = Chat::start(mode, &["--jwt-secret", &secret]);
    let mut phone = json_client(chat.process(0), &format!("?token={}", token("alice")));
    let _ = common::recv_through(&mut phone, "replayed");
    let mut laptop = json_client(chat.process(1), &format!("?token={}", token("alice")));
    let _ = common::recv_through(&mut laptop, "replayed");
    send(&mut phone, "one");
    send(&mut phone, "two");
    common::recv_through(&mut phone, "message");
    let (_, two) = common::recv_through(&mut phone, "message");
    let id = two["id"].as_str().unwrap().to_string();
    send(&mut phone, &format!("/read {id}"));
    let (_, read) = common::recv_through(&mut laptop, "read");
    assert_eq!(read, serde_json::json!({"type": "read", "room": "lobby", "id": id}));
    drop(phone);
    drop(laptop);
    let mut again = json_client(chat.process(1), &format!("?token={}", token("alice")));
    let (_, replayed) = common::recv_through(&mut again, "replayed");
    assert_eq!(replayed["read"].as_str(), Some(id.as_str()), "{replayed}");
    // Bob reads on process 0 only; process 1 never saw him (in a cluster, his marker comes
    // from Redis with his nick's claim).
    let mut bob = json_client(chat.process(0), &format!("?token={}", token("bob")));
    let _ = common::recv_through(&mut bob, "replayed");
    send(&mut bob, &format!("/read {id}"));
    send(&mut bob, "read it");
    common::recv_through(&mut bob, "message");
    drop(bob);
    let mut bob = json_client(chat.process(1), &format!("?token={}", token("bob")));
    let (_, replayed) = common::recv_through(&mut bob, "replayed");
    assert_eq!(replayed["read"].as_str(), Some(id.as_str()), "{replayed}");
}

// One process only: --data-dir is refused with --redis.
/// With `--data-dir`, a user's marker outlives a SIGKILL and a restart.
#[test]
fn with_a_data_dir_a_read_marker_outlives_a_restart() {
    let dir = common::TempDir::new("read-restart");
    let secret = dir.file("secret", SECRET);
    let data = dir.0.join("data");
    let flags = ["--jwt-secret", secret.as_str(), "--data-dir", data.to_str().unwrap()];
    let mut server = common::TestServer::start(&flags);
    let mut alice = json_client(&server, &format!("?token={}", token("alice")));
    let _ = common::recv_through(&mut alice, "replayed");
    send(&mut alice, "remember me");
    let (_, said) = common::recv_through(&mut alice, "message");
    let id = said["id"].as_str().unwrap().to_string();
    send(&mut alice, &format!("/read {id}"));
    // Committed before anything after it is written: a message after it proves the marker is in.
    send(&mut alice, "after the marker");
    common::recv_through(&mut alice, "message");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = common::TestServer::start(&flags);
    let mut back = json_client(&server, &format!("?token={}", token("alice")));
    let (_, replayed) = common::recv_through(&mut back, "replayed");
    assert_eq!(replayed["read"].as_str(), Some(id.as_str()), "{replayed}");
}

both_modes!(edits_and_deletes_reach_every_process_and_newcomers_see_the_room_as_it_stands);
/// Alice (process 0) edits and deletes in a room of her own; Bob (process 1) comes to it
/// afterwards (in a cluster, his process loads it from Redis): he sees the edited text, marked
/// edited, and nothing of the deleted message.
fn edits_and_deletes_reach_every_process_and_newcomers_see_the_room_as_it_stands(chat: &Chat) {
    let mut alice = json_client(chat.process(0), "?nick=alice&room=attic");
    let _ = common::recv_through(&mut alice, "replayed");
    for text in ["helo", "secret-oops", "kept"] {
        send(&mut alice, text);
    }
    let ids: Vec<String> = (0..3)
        .map(|_| common::recv_through(&mut alice, "message").1["id"].as_str().unwrap().to_string())
        .collect();
    send(&mut alice, &format!("/edit {} hello", ids[0]));
    let (_, edited) = common::recv_through(&mut alice, "edited");
    assert_eq!((edited["target"].as_str(), edited["text"].as_str()), (Some(ids[0].as_str()), Some("hello")));
    send(&mut alice, &format!("/delete {}", ids[1]));
    common::recv_through(&mut alice, "deleted");
    let mut bob = json_client(chat.process(1), "?nick=bob&room=attic");
    let (replayed, _) = common::recv_through(&mut bob, "replayed");
    assert_eq!(common::texts(&replayed), ["hello", "kept"], "{replayed:?}");
    assert_eq!(replayed[0]["edited"], true);
    // Someone else's message is not his to change.
    send(&mut bob, &format!("/delete {}", ids[2]));
    let (_, refused) = common::recv_through(&mut bob, "error");
    assert_eq!(
        (refused["type"].as_str(), refused["text"].as_str()),
        (Some("error"), Some("that message is not yours"))
    );
}

// One process only: --data-dir is refused with --redis.
/// A deleted message's text is gone from the data directory's files: searched after a
/// SIGKILL, and again after a restart, and the room no longer shows it.
#[test]
fn a_deleted_text_leaves_no_byte_in_the_data_directory() {
    let dir = common::TempDir::new("delete-scrub");
    let data = dir.0.join("data");
    // The needle stays in what the room keeps in memory, where a delete finds it.
    let flags = ["--data-dir", data.to_str().unwrap(), "--history", "1000"];
    let mut server = common::TestServer::start(&flags);
    let mut alice = json_client(&server, "?nick=alice");
    let _ = common::recv_through(&mut alice, "replayed");
    const NEEDLE: &str = "needle-9f8e7d6c5b4a-do-not-keep";
    // Enough around it that the store has pages to reuse and move.
    for i in 0..300 {
        send(&mut alice, &format!("filler {i} {}", "x".repeat(100)));
    }
    send(&mut alice, NEEDLE);
    for i in 0..300 {
        send(&mut alice, &format!("after {i} {}", "y".repeat(100)));
    }
    let id = loop {
        let (_, message) = common::recv_through(&mut alice, "message");
        if message["text"] == NEEDLE {
            break message["id"].as_str().unwrap().to_string();
        }
    };
    // Edited first: the edit's text is the message's text too, and goes with it.
    const EDITED: &str = "second-needle-1a2b3c4d-do-not-keep";
    send(&mut alice, &format!("/edit {id} {EDITED}"));
    common::recv_through(&mut alice, "edited");
    send(&mut alice, &format!("/delete {id}"));
    common::recv_through(&mut alice, "deleted");
    // An edit is kept too: the message reads as changed after the restart.
    send(&mut alice, "typo hre");
    let (_, typo) = common::recv_through(&mut alice, "message");
    send(&mut alice, &format!("/edit {} typo here", typo["id"].as_str().unwrap()));
    common::recv_through(&mut alice, "edited");
    let files_hold_it = || {
        std::fs::read_dir(&data).unwrap().any(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            [NEEDLE, EDITED].iter().any(|needle| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    server.child.kill().unwrap(); // SIGKILL: what is on disk is what was committed
    server.child.wait().unwrap();
    assert!(!files_hold_it(), "the deleted text is still in the data directory");
    let server = common::TestServer::start(&flags);
    let mut bob = json_client(&server, "?nick=bob");
    let (replayed, _) = common::recv_through(&mut bob, "replayed");
    assert!(!replayed.iter().any(|m| m["text"] == NEEDLE), "replayed after the restart");
    let edited = replayed.iter().find(|m| m["id"] == typo["id"]).expect("the edited message is kept");
    assert_eq!((edited["text"].as_str(), edited["edited"].as_bool()), (Some("typo here"), Some(true)));
    drop(server);
    assert!(!files_hold_it(), "the deleted text came back after a restart");
}
