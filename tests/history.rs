//! History, message ids, JSON mode and resume, against the real server over real sockets:
//! joiners get the last N messages, a client that drops and comes back with `since` gets
//! exactly what it missed (also while someone keeps talking), and text clients are unchanged.
//! Each scenario runs against one process and against two processes sharing a Redis, with its
//! clients spread over both (`both_modes!`, `tests/common/chat.rs`), so that in a cluster a
//! client resumes on another process than the one it left.

mod common;

use std::io::Write;
use std::thread;

use common::{
    both_modes, json_client, read_http_head, recv_json, recv_text, recv_through, recv_until, send, texts,
    Chat, Client, TempDir, TestServer,
};
use serde_json::Value;
use wschat::wire::UpgradeRequest;

/// The sequence number of an id `EPOCH:SEQ`.
fn seq(id: &Value) -> u64 {
    id.as_str().unwrap().split_once(':').unwrap().1.parse().unwrap()
}

/// Alice (text mode) says each line and waits for it to come back, so it is in the history.
fn say_all(alice: &mut Client, lines: &[String]) {
    for line in lines {
        send(alice, line);
        recv_until(alice, |t| t == format!("alice: {line}"));
    }
}

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|i| format!("m{i}")).collect()
}

both_modes!(a_joiner_receives_the_last_n_messages_in_either_mode, ["--history", "3"]);
fn a_joiner_receives_the_last_n_messages_in_either_mode(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    say_all(&mut alice, &numbered(1, 5));

    let mut bob = chat.json_client("?nick=bob");
    let welcome = recv_json(&mut bob);
    assert_eq!((welcome["type"].as_str(), welcome["nick"].as_str()), (Some("welcome"), Some("bob")));
    let (replayed, summary) = recv_through(&mut bob, "replayed");
    assert_eq!(texts(&replayed), ["m3", "m4", "m5"]);
    for message in &replayed {
        assert_eq!(message["replay"], true);
        assert_eq!(message["from"], "alice");
        assert_eq!(message["room"], "lobby");
        assert!(message["ts"].as_u64().unwrap() > 1_700_000_000_000, "a wall-clock timestamp: {message}");
    }
    let ids: Vec<u64> = replayed.iter().map(|m| seq(&m["id"])).collect();
    assert_eq!(ids, [3, 4, 5], "ids count up by one per message");
    assert_eq!(summary["recovered"], false, "no since: nothing to recover");
    assert_eq!(summary["count"], 3);
    assert_eq!(summary["last"], replayed[2]["id"]);
    // Once bob hears his own join it has been through the room: it cannot reach carol between
    // her replay and her own join (in a cluster it would, while still on its way through Redis).
    let (_, joined) = recv_through(&mut bob, "joined");
    assert_eq!(joined["nick"], "bob");

    let mut carol = chat.chat_client("carol");
    assert_eq!(recv_text(&mut carol), "*** recent messages in lobby:");
    assert_eq!(
        [recv_text(&mut carol), recv_text(&mut carol), recv_text(&mut carol)],
        ["alice: m3", "alice: m4", "alice: m5"]
    );
    assert_eq!(recv_text(&mut carol), "*** end of recent messages");
    assert_eq!(recv_text(&mut carol), "*** carol joined lobby");

    // Live messages carry ids that continue the sequence, in both modes' own forms.
    send(&mut alice, "live");
    assert_eq!(recv_until(&mut carol, |t| t.starts_with("alice: ")), "alice: live");
    let live = loop {
        let value = recv_json(&mut bob);
        if value["type"] == "message" {
            break value;
        }
    };
    assert_eq!((live["text"].as_str(), seq(&live["id"])), (Some("live"), 6));
    assert!(live.get("replay").is_none(), "live messages are not marked as replays: {live}");
}

both_modes!(a_dropped_client_resumes_with_exactly_what_it_missed);
fn a_dropped_client_resumes_with_exactly_what_it_missed(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    send(&mut alice, "/join dev");
    recv_until(&mut alice, |t| t == "*** alice joined dev");
    let mut bob = chat.json_client("?nick=bob&room=dev");
    let (_, summary) = recv_through(&mut bob, "replayed");
    assert_eq!((summary["room"].as_str(), summary["count"].as_u64()), (Some("dev"), Some(0)));
    say_all(&mut alice, &numbered(1, 2));
    let (seen, _) = (0..2).fold((Vec::new(), ()), |(mut seen, ()), _| {
        seen.push(recv_through(&mut bob, "message").1);
        (seen, ())
    });
    let last_seen = seen[1]["id"].as_str().unwrap().to_string();
    drop(bob); // the connection drops without a close

    say_all(&mut alice, &numbered(3, 7));
    let mut bob = chat.json_client(&format!("?nick=bob2&room=dev&since={last_seen}"));
    let (replayed, summary) = recv_through(&mut bob, "replayed");
    assert_eq!(texts(&replayed), ["m3", "m4", "m5", "m6", "m7"], "exactly the five it missed");
    assert_eq!(summary["recovered"], true);
    assert_eq!(summary["count"], 5);
    send(&mut alice, "after");
    let (_, live) = recv_through(&mut bob, "message");
    assert_eq!(live["text"], "after", "then live traffic, nothing doubled");
    assert_eq!(seq(&live["id"]), seq(&summary["last"]) + 1);
}

both_modes!(
    resuming_while_someone_keeps_talking_loses_and_doubles_nothing,
    ["--history", "1000", "--max-messages-per-sec", "0"]
);
fn resuming_while_someone_keeps_talking_loses_and_doubles_nothing(chat: &Chat) {
    let mut bob = chat.json_client("?nick=bob");
    recv_through(&mut bob, "replayed");
    let mut alice = chat.chat_client("alice");
    send(&mut alice, "first");
    let (_, first) = recv_through(&mut bob, "message");
    let since = first["id"].as_str().unwrap().to_string();
    drop(bob);

    // Alice talks without pause while bob comes back: some of her messages come before the
    // resume (replayed), some after (live), and the boundary must be seamless.
    let talker = thread::spawn(move || {
        for i in 1..=300 {
            send(&mut alice, &format!("n{i}"));
        }
        send(&mut alice, "done");
        recv_until(&mut alice, |t| t == "alice: done");
    });
    let mut bob = chat.json_client(&format!("?nick=bob&since={since}"));
    let mut seqs = Vec::new();
    let mut summary = None;
    let mut done = false;
    // Until both her last line and the replay's summary are in: "done" itself may be replayed
    // (if she finished before bob's replay was made), and then the summary follows it.
    while !(done && summary.is_some()) {
        let value = recv_json(&mut bob);
        match value["type"].as_str() {
            Some("message") => {
                seqs.push(seq(&value["id"]));
                done |= value["text"] == "done";
            }
            Some("replayed") => summary = Some(value),
            _ => {}
        }
    }
    talker.join().unwrap();
    let summary = summary.unwrap();
    assert_eq!(summary["recovered"], true, "{summary}");
    let expected: Vec<u64> = (seq(&first["id"]) + 1..=seq(&first["id"]) + 301).collect();
    assert_eq!(seqs, expected, "every message after `since` exactly once, in order");
}

both_modes!(an_unknown_epoch_or_a_trimmed_since_is_not_recovered, ["--history", "3"]);
fn an_unknown_epoch_or_a_trimmed_since_is_not_recovered(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    say_all(&mut alice, &numbered(1, 10));
    let mut probe = chat.json_client("?nick=probe");
    let (_, summary) = recv_through(&mut probe, "replayed");
    let epoch = summary["last"].as_str().unwrap().split_once(':').unwrap().0.to_string();

    for since in ["zzzz9999:5".to_string(), format!("{epoch}:2"), format!("{epoch}:99"), "junk".into()] {
        let mut bob = chat.json_client(&format!("?nick=bob&since={since}"));
        let (replayed, summary) = recv_through(&mut bob, "replayed");
        assert_eq!(summary["recovered"], false, "since={since}");
        assert_eq!(texts(&replayed), ["m8", "m9", "m10"], "since={since}: what is kept, so the gap shows");
    }
    // The last id kept is still a good place to resume from.
    let mut bob = chat.json_client(&format!("?nick=bob&since={epoch}:7"));
    let (replayed, summary) = recv_through(&mut bob, "replayed");
    assert_eq!((summary["recovered"].as_bool(), texts(&replayed)), (Some(true), vec!["m8", "m9", "m10"]));
}

both_modes!(text_clients_see_no_json_and_no_subprotocol);
fn text_clients_see_no_json_and_no_subprotocol(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    say_all(&mut alice, &numbered(1, 1));
    // By hand: a client library would refuse a server that selects none of its subprotocols.
    let process = chat.next_process();
    let mut stream = process.tcp();
    let host = process.addr.to_string();
    let request = UpgradeRequest::new(&host, "/?nick=bob").header("Sec-WebSocket-Protocol", "chat.v2");
    stream.write_all(&request.to_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "an unknown subprotocol is not selected: {head}"
    );
    let mut bob = tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None);
    assert!(recv_text(&mut bob).starts_with("*** welcome, you are bob in lobby"));
    assert_eq!(recv_text(&mut bob), "*** recent messages in lobby:");
    assert_eq!(recv_text(&mut bob), "alice: m1");
    assert_eq!(recv_text(&mut bob), "*** end of recent messages");
    send(&mut bob, "/who");
    assert_eq!(recv_until(&mut bob, |t| t.starts_with("*** in ")), "*** in lobby (2): alice, bob");
}

both_modes!(json_mode_gives_every_kind_of_event_its_own_type);
fn json_mode_gives_every_kind_of_event_its_own_type(chat: &Chat) {
    let mut alice = chat.chat_client("alice");
    // Once alice hears her own join it has been through the room, so it cannot reach bob after
    // his replay (in a cluster it would, while still on its way through Redis).
    recv_until(&mut alice, |t| t == "*** alice joined lobby");
    let mut bob = chat.json_client("?nick=bob");
    recv_through(&mut bob, "replayed");
    let joined = recv_json(&mut bob);
    assert_eq!((joined["type"].as_str(), joined["nick"].as_str()), (Some("joined"), Some("bob")));

    send(&mut alice, "/me waves");
    let action = recv_json(&mut bob);
    assert_eq!((action["type"].as_str(), action["text"].as_str()), (Some("action"), Some("waves")));
    send(&mut alice, "/msg bob psst");
    let private = recv_json(&mut bob);
    assert_eq!(private["type"], "private");
    assert_eq!((private["from"].as_str(), private["to"].as_str()), (Some("alice"), Some("bob")));
    assert!(private.get("id").is_none(), "private messages have no id");
    send(&mut bob, "/who");
    let who = recv_json(&mut bob);
    assert_eq!((who["type"].as_str(), who["count"].as_u64()), (Some("who"), Some(2)));
    assert_eq!(who["nicks"], serde_json::json!(["alice", "bob"]));
    send(&mut bob, "/rooms");
    let rooms = recv_json(&mut bob);
    assert_eq!(rooms["rooms"], serde_json::json!([{"name": "lobby", "members": 2}]));
    send(&mut bob, "/nick robert");
    let nick = recv_json(&mut bob);
    assert_eq!(
        (nick["type"].as_str(), nick["old"].as_str(), nick["new"].as_str()),
        (Some("nick"), Some("bob"), Some("robert"))
    );
    send(&mut bob, "/bogus");
    assert_eq!(recv_json(&mut bob)["type"], "error");
    send(&mut bob, "/help");
    let help = recv_json(&mut bob);
    assert!(help["type"] == "notice" && help["text"].as_str().unwrap().starts_with("commands:"));
    alice.send(tungstenite::Message::binary(vec![1, 2, 3])).unwrap();
    let binary = recv_json(&mut bob);
    assert_eq!((binary["type"].as_str(), binary["bytes"].as_u64()), (Some("binary"), Some(3)));
    assert_eq!(common::recv(&mut bob), tungstenite::Message::binary(vec![1, 2, 3]));
    send(&mut alice, "/quit bye");
    let left = recv_json(&mut bob);
    assert_eq!((left["type"].as_str(), left["reason"].as_str()), (Some("left"), Some("quit: bye")));
}

// One process only: --data-dir (its own durable store, across its own kill) is refused with --redis.
#[test]
fn with_a_data_dir_a_killed_server_keeps_every_id_a_client_saw() {
    let dir = TempDir::new("sigkill");
    let history = ["--history", "5000"];
    let mut server =
        TestServer::start(&["--data-dir", dir.arg(), "--max-messages-per-sec", "0", history[0], history[1]]);
    let mut bob = json_client(&server, "?nick=bob&room=dev");
    recv_through(&mut bob, "replayed");
    let mut alice = server.chat_client("alice");
    send(&mut alice, "/join dev");
    recv_until(&mut alice, |t| t == "*** alice joined dev");

    // Alice talks without pause; the server is killed while bob is still receiving.
    let talker = thread::spawn(move || {
        for i in 1..=2000 {
            if alice.send(tungstenite::Message::text(format!("k{i}"))).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let (_, message) = recv_through(&mut bob, "message");
        seen.push(message);
    }
    server.child.kill().unwrap(); // SIGKILL: no chance to flush or close anything
    server.child.wait().unwrap();
    while let Ok(tungstenite::Message::Text(text)) = bob.read() {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            if value["type"] == "message" {
                seen.push(value);
            }
        }
    }
    let _ = talker.join();

    let server = TestServer::start(&["--data-dir", dir.arg(), history[0], history[1]]);
    // Resuming from the first message bob saw replays every later one he saw, unchanged.
    let first = seen[0]["id"].as_str().unwrap();
    let mut again = json_client(&server, &format!("?nick=bob&room=dev&since={first}"));
    let (replayed, summary) = recv_through(&mut again, "replayed");
    assert_eq!(summary["recovered"], true, "the epoch survived the kill: {summary}");
    assert!(replayed.len() >= seen.len() - 1, "every message bob saw was committed");
    for (saw, kept) in seen[1..].iter().zip(&replayed) {
        assert_eq!((&saw["id"], &saw["text"]), (&kept["id"], &kept["text"]), "same id, same message");
    }
    // Resuming from the last one he saw is seamless, and new ids continue the sequence.
    let last = seen.last().unwrap()["id"].as_str().unwrap();
    let mut resumed = json_client(&server, &format!("?nick=bob2&room=dev&since={last}"));
    let (_, summary) = recv_through(&mut resumed, "replayed");
    assert_eq!(summary["recovered"], true);
    let mut carol = server.chat_client("carol");
    send(&mut carol, "/join dev");
    send(&mut carol, "after the restart");
    let (_, fresh) = recv_through(&mut resumed, "message");
    assert_eq!(fresh["text"], "after the restart");
    assert_eq!(seq(&fresh["id"]), seq(&summary["last"]) + 1, "no id reused, none skipped");
}

// One process only: --data-dir (a store that process cannot open) is refused with --redis.
#[test]
fn a_corrupt_store_stops_the_server_at_start_naming_the_file() {
    let dir = TempDir::new("corrupt");
    std::fs::write(dir.0.join("history.redb"), vec![0x5a; 64 * 1024]).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wschat-server"))
        .args(["127.0.0.1:0", "--data-dir", dir.arg()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("history.redb") && !stderr.contains("listening"), "{stderr}");
}

both_modes!(a_room_full_of_big_messages_does_not_get_joiners_cut_off);
fn a_room_full_of_big_messages_does_not_get_joiners_cut_off(chat: &Chat) {
    // 20 messages of 60 KB are more than a new reader's queue may hold (--max-outbound 1 MiB):
    // the replay sends the newest that fit in half of it and says the rest is a gap.
    let mut alice = chat.chat_client("alice");
    let big: Vec<String> = (0..20).map(|i| format!("{i:02}{}", "z".repeat(60_000))).collect();
    say_all(&mut alice, &big);
    let mut bob = chat.json_client("?nick=bob");
    let (replayed, summary) = recv_through(&mut bob, "replayed");
    assert!((4..20).contains(&replayed.len()), "{} replayed", replayed.len());
    assert_eq!(replayed.last().unwrap()["text"].as_str().unwrap()[..2], *"19", "the newest are kept");
    assert_eq!(summary["recovered"], false);
    send(&mut bob, "/who");
    let who = loop {
        let value = recv_json(&mut bob);
        if value["type"] == "who" {
            break value;
        }
    };
    assert_eq!(who["count"], 2, "bob is still connected and served");
}
