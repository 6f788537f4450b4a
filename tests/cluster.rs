//! Cluster mode against a real `redis-server` and several real `wschat-server` processes
//! (`--redis`): one chat across them, in one order, with ids that let a client resume on any
//! of them, and local chat that survives Redis going away.
//!
//! Skipped, and saying so, where `redis-server` is not installed; under `CI=true` a missing
//! `redis-server` fails (see `common::redis`).

mod common;

use std::collections::HashSet;

use common::redis::{member_server, RedisServer};
use common::{joined, json_client, recv_json, recv_through, send, texts, Client, TestServer};
use serde_json::Value;

/// Reads until `count` room messages have arrived; returns them (other events skipped).
fn messages(ws: &mut Client, count: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < count {
        let value = recv_json(ws);
        if value["type"] == "message" {
            got.push(value);
        }
    }
    got
}

/// Reads until an event of type `kind` about `nick` (its `nick` or `from`) arrives.
fn event_about(ws: &mut Client, kind: &str, nick: &str) -> Value {
    loop {
        let value = recv_json(ws);
        if value["type"] == kind && (value["nick"] == nick || value["from"] == nick) {
            return value;
        }
    }
}

fn id_seq(id: &Value) -> u64 {
    id.as_str().unwrap().split_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn messages_from_every_process_reach_every_member_in_one_order() {
    let Some(redis) = RedisServer::start("messages_from_every_process_reach_every_member_in_one_order")
    else {
        return;
    };
    let servers =
        [member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"])];
    let mut clients: Vec<Client> = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        for j in 0..2 {
            clients.push(joined(server, &format!("?nick=p{i}c{j}")));
        }
    }
    // Everybody talks at once, from three processes.
    const EACH: usize = 15;
    for n in 0..EACH {
        for (c, ws) in clients.iter_mut().enumerate() {
            send(ws, &format!("c{c} says {n}"));
        }
    }
    let total = EACH * clients.len();
    let mut orders = Vec::new();
    for ws in clients.iter_mut() {
        let got = messages(ws, total);
        let seqs: Vec<u64> = got.iter().map(|m| id_seq(&m["id"])).collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..first + total as u64).collect::<Vec<_>>(), "numbered without gaps");
        let epochs: HashSet<&str> =
            got.iter().map(|m| m["id"].as_str().unwrap().split(':').next().unwrap()).collect();
        assert_eq!(epochs.len(), 1, "one epoch");
        orders.push(texts(&got).into_iter().map(String::from).collect::<Vec<_>>());
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "every member, on every process, sees the same order");
    }
    // Each sender's own lines are in the order it sent them.
    for c in 0..clients.len() {
        let own: Vec<&String> = orders[0].iter().filter(|t| t.starts_with(&format!("c{c} "))).collect();
        let sent: Vec<String> = (0..EACH).map(|n| format!("c{c} says {n}")).collect();
        assert_eq!(own, sent.iter().collect::<Vec<_>>());
    }
}

#[test]
fn joins_and_leaves_are_announced_on_every_process() {
    let Some(redis) = RedisServer::start("joins_and_leaves_are_announced_on_every_process") else { return };
    let (a, b) = (member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"]));
    let mut ann = joined(&a, "?nick=ann");
    let mut bob = joined(&b, "?nick=bob");
    event_about(&mut ann, "joined", "bob");
    send(&mut bob, "/join dev");
    // Room events reach a process from when its subscription is live, which the replay marks.
    recv_through(&mut bob, "replayed");
    let left = event_about(&mut ann, "left", "bob");
    assert_eq!(left["moved_to"], "dev", "{left}");
    // A binary message crosses too, after the line saying whose it is.
    let mut cat = joined(&a, "?nick=cat&room=dev");
    event_about(&mut bob, "joined", "cat");
    cat.send(tungstenite::Message::binary(vec![1u8, 2, 3])).unwrap();
    event_about(&mut bob, "binary", "cat");
    match common::recv(&mut bob) {
        tungstenite::Message::Binary(data) => assert_eq!(&data[..], [1, 2, 3]),
        other => panic!("expected the binary message, got {other:?}"),
    }
}

#[test]
fn a_client_resumes_on_another_process_without_a_gap() {
    let Some(redis) = RedisServer::start("a_client_resumes_on_another_process_without_a_gap") else { return };
    let (a, b) = (member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"]));
    let mut talker = joined(&a, "?nick=talker&room=dev");
    let mut reader = joined(&a, "?nick=reader&room=dev");
    recv_json(&mut talker); // reader joined
    for n in 1..=3 {
        send(&mut talker, &format!("m{n}"));
    }
    let seen = messages(&mut reader, 3);
    let last_seen = seen[2]["id"].as_str().unwrap().to_string();
    drop(reader);
    for n in 4..=6 {
        send(&mut talker, &format!("m{n}"));
    }
    messages(&mut talker, 6);
    // Back, on the other process, which has never had a member in this room.
    let mut reader = json_client(&b, &format!("?nick=reader&room=dev&since={last_seen}"));
    let (replayed, summary) = recv_through(&mut reader, "replayed");
    assert_eq!(texts(&replayed), ["m4", "m5", "m6"], "exactly what it missed");
    assert_eq!(summary["recovered"], true, "{summary}");
    // And live from there on, numbered on.
    send(&mut talker, "m7");
    let live = messages(&mut reader, 1);
    assert_eq!(live[0]["text"], "m7");
    assert_eq!(id_seq(&live[0]["id"]), id_seq(&replayed[2]["id"]) + 1);
}

#[test]
fn chat_goes_on_locally_while_redis_is_away_and_joins_up_again() {
    let Some(mut redis) = RedisServer::start("chat_goes_on_locally_while_redis_is_away_and_joins_up_again")
    else {
        return;
    };
    let a = TestServer::start(&["--redis", &redis.url(), "--metrics", "127.0.0.1:0"]);
    a.wait_for_log("connected to Redis");
    let b = member_server(&redis, &["-vv"]);
    let linked = || common::metric(&common::scrape_metrics(&a.metrics_addr()), "wschat_cluster_linked");
    assert_eq!(linked(), 1.0);
    let mut ann = joined(&a, "?nick=ann");
    let mut amy = joined(&a, "?nick=amy");
    recv_json(&mut ann); // amy joined
    let mut bob = joined(&b, "?nick=bob");
    recv_json(&mut ann); // bob joined
    recv_json(&mut amy);
    send(&mut ann, "before");
    let before = messages(&mut bob, 1);
    let old_id = before[0]["id"].as_str().unwrap().to_string();
    messages(&mut amy, 1);

    redis.kill();
    for ws in [&mut amy, &mut bob] {
        let lost = recv_json(ws);
        assert_eq!(lost["type"], "notice", "{lost}");
        assert!(lost["text"].as_str().unwrap().contains("lost its link"), "{lost}");
    }
    a.wait_for_log("chat goes on on this server alone");
    assert_eq!(linked(), 0.0, "what an operator alerts on");
    // Ann and Amy, on one process, still chat.
    recv_json(&mut ann);
    send(&mut ann, "while away");
    let local = messages(&mut amy, 1);
    assert_eq!(local[0]["text"], "while away");

    // Redis is back, empty: both processes link up again, under a new epoch.
    let redis = RedisServer::start_on(redis.port);
    let back = recv_json(&mut bob);
    assert!(back["text"].as_str().unwrap().contains("linked to the others again"), "{back}");
    recv_through(&mut bob, "replayed");
    for ws in [&mut ann, &mut amy] {
        recv_through(ws, "replayed");
    }
    send(&mut bob, "after");
    for ws in [&mut ann, &mut amy, &mut bob] {
        let got = messages(ws, 1);
        assert_eq!(got[0]["text"], "after");
        assert_ne!(got[0]["id"].as_str().unwrap().split(':').next(), old_id.split(':').next(), "a new epoch");
    }
    // An id from before the restart cannot be resumed from, and says so.
    let mut late = json_client(&b, &format!("?nick=late&since={old_id}"));
    let (replayed, summary) = recv_through(&mut late, "replayed");
    assert_eq!(summary["recovered"], false, "{summary}");
    assert_eq!(texts(&replayed), ["after"]);
    drop(redis);
}

/// Reads until the next object of type `kind`.
fn next_of(ws: &mut Client, kind: &str) -> Value {
    loop {
        let value = recv_json(ws);
        if value["type"] == kind {
            return value;
        }
    }
}

#[test]
fn nicks_are_unique_across_processes() {
    let Some(redis) = RedisServer::start("nicks_are_unique_across_processes") else { return };
    let (a, b) = (member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"]));
    let ann = joined(&a, "?nick=Ann");
    // The same name (any case, or a look-alike) is refused on the other process.
    let mut other = json_client(&b, "?nick=ANN");
    let refused = next_of(&mut other, "notice");
    assert!(refused["text"].as_str().unwrap().contains("already in use"), "{refused}");
    let welcome = next_of(&mut other, "welcome");
    let guest = welcome["nick"].as_str().unwrap().to_string();
    assert!(guest.starts_with("guest-"), "{welcome}");
    recv_through(&mut other, "replayed");
    send(&mut other, "/nick ann");
    let error = next_of(&mut other, "error");
    assert!(error["text"].as_str().unwrap().contains("already in use"), "{error}");
    // Once Ann has gone, the nick is free on every process.
    drop(ann);
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        send(&mut other, "/nick ann");
        let answer = loop {
            let value = recv_json(&mut other);
            if value["type"] == "error" || (value["type"] == "nick" && value["old"] == guest.as_str()) {
                break value;
            }
        };
        if answer["type"] == "nick" {
            assert_eq!(answer["new"], "ann");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the nick was never freed: {answer}");
    }
    // A change of case only keeps the name taken everywhere.
    send(&mut other, "/nick ANN");
    assert_eq!(next_of(&mut other, "nick")["new"], "ANN");
    let mut third = json_client(&a, "?nick=ann");
    let refused = next_of(&mut third, "notice");
    assert!(refused["text"].as_str().unwrap().contains("already in use"), "{refused}");
}

#[test]
fn who_rooms_and_private_messages_span_processes() {
    let Some(redis) = RedisServer::start("who_rooms_and_private_messages_span_processes") else { return };
    let (a, b) = (member_server(&redis, &["-vv"]), member_server(&redis, &["-vv"]));
    let mut ann = joined(&a, "?nick=ann");
    let mut bob = joined(&b, "?nick=bob");
    let _cat = joined(&b, "?nick=cat&room=dev");
    event_about(&mut ann, "joined", "bob");
    send(&mut ann, "/who");
    let who = next_of(&mut ann, "who");
    assert_eq!(
        (who["count"].as_u64(), &who["nicks"]),
        (Some(2), &serde_json::json!(["ann", "bob"])),
        "{who}"
    );
    send(&mut ann, "/rooms");
    let rooms = next_of(&mut ann, "rooms");
    assert_eq!(
        rooms["rooms"],
        serde_json::json!([{"name": "dev", "members": 1}, {"name": "lobby", "members": 2}]),
        "{rooms}"
    );
    send(&mut ann, "/msg BOB psst");
    let private = next_of(&mut bob, "private");
    assert_eq!(
        (private["from"].as_str(), private["to"].as_str(), private["text"].as_str()),
        (Some("ann"), Some("bob"), Some("psst"))
    );
    let copy = next_of(&mut ann, "private");
    assert_eq!((copy["from"].as_str(), copy["to"].as_str()), (Some("ann"), Some("bob")), "the sender's copy");
    send(&mut ann, "/msg nobody hello?");
    let error = next_of(&mut ann, "error");
    assert_eq!(error["text"], "no such nick: nobody");
}

#[test]
fn a_killed_process_s_members_leave_who_within_the_presence_expiry() {
    let Some(redis) = RedisServer::start("a_killed_process_s_members_leave_who_within_the_presence_expiry")
    else {
        return;
    };
    let start = |ttl: &str| {
        let server = TestServer::start(&["--redis", &redis.url(), "--presence-ttl", ttl]);
        server.wait_for_log("connected to Redis");
        server
    };
    let (a, mut b) = (start("30s"), start("2s"));
    let mut ann = joined(&a, "?nick=ann");
    let _bob = joined(&b, "?nick=bob");
    event_about(&mut ann, "joined", "bob");
    b.child.kill().unwrap(); // SIGKILL: no goodbye
    b.child.wait().unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        send(&mut ann, "/who");
        let who = next_of(&mut ann, "who");
        if who["nicks"] == serde_json::json!(["ann"]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bob never left /who: {who}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // And its nick is free again.
    let mut bob = json_client(&a, "?nick=bob");
    assert_eq!(next_of(&mut bob, "welcome")["nick"], "bob");
}

#[test]
fn kicks_and_bans_reach_every_process() {
    let Some(redis) = RedisServer::start("kicks_and_bans_reach_every_process") else { return };
    const SECRET: &[u8] = b"a cluster test secret of 32+ bytes!";
    let keys = common::TempDir::new("cluster-bans");
    let secret = keys.file("secret", SECRET);
    let start = || {
        let server = TestServer::start(&["--redis", &redis.url(), "--jwt-secret", &secret]);
        server.wait_for_log("connected to Redis");
        server
    };
    let (a, b) = (start(), start());
    let token = |sub: &str, admin: bool| {
        let role = if admin { "admin" } else { "user" };
        common::hs256(SECRET, serde_json::json!({"sub": sub, "exp": common::unix_now() + 600, "role": role}))
    };
    let mut root = joined(&a, &format!("?token={}", token("root", true)));
    let mut bob = joined(&b, &format!("?token={}", token("bob", false)));
    event_about(&mut root, "joined", "bob");
    send(&mut root, "/kick bob calm down");
    let (code, reason) = common::expect_close(&mut bob);
    assert_eq!((u16::from(code), reason.as_str()), (4000, "kicked by root: calm down"));
    assert_eq!(next_of(&mut root, "notice")["text"], "bob was kicked");
    // Banned on one process, refused by every process.
    let mut bob = joined(&b, &format!("?token={}", token("bob", false)));
    send(&mut root, "/ban bob 10m rude");
    let (code, reason) = common::expect_close(&mut bob);
    assert_eq!((u16::from(code), reason.as_str()), (4000, "banned by root: rude"));
    assert_eq!(next_of(&mut root, "notice")["text"], "bob is banned");
    // The ban reaches the other process through Redis a moment after the moderator is told.
    for server in [&a, &b] {
        let path = format!("/?token={}", token("bob", false));
        let deadline = std::time::Instant::now() + common::WAIT;
        loop {
            match tungstenite::client(server.url(&path), server.tcp()) {
                Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                    assert_eq!(response.status(), 403);
                    break;
                }
                _ => assert!(std::time::Instant::now() < deadline, "bob is still let in"),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn processes_share_one_address_with_reuse_port_and_chat_as_one() {
    let Some(redis) = RedisServer::start("processes_share_one_address_with_reuse_port_and_chat_as_one")
    else {
        return;
    };
    let flags = ["--redis", &redis.url(), "--reuse-port"];
    let a = TestServer::start(&flags);
    let b = TestServer::start_at(a.addr, &flags);
    assert_eq!(a.addr, b.addr, "both listen on one address");
    for server in [&a, &b] {
        server.wait_for_log("connected to Redis");
    }
    // The kernel spreads connections over both processes (which way is its choice, so not
    // asserted); every client, wherever it landed, hears the others.
    let mut clients: Vec<Client> = (0..8).map(|i| joined(&a, &format!("?nick=c{i}"))).collect();
    send(&mut clients[0], "hello, everyone");
    for ws in clients.iter_mut() {
        assert_eq!(messages(ws, 1)[0]["text"], "hello, everyone");
    }
}

#[test]
fn a_stuck_redis_is_dropped_and_what_it_did_not_answer_is_delivered_here() {
    let Some(redis) =
        RedisServer::start("a_stuck_redis_is_dropped_and_what_it_did_not_answer_is_delivered_here")
    else {
        return;
    };
    let a = member_server(&redis, &["-vv"]);
    let mut ann = joined(&a, "?nick=ann");
    let mut amy = joined(&a, "?nick=amy");
    event_about(&mut ann, "joined", "amy");
    redis.pause();
    send(&mut ann, "while redis is stuck");
    // No answer: after the reply timeout (5 s) the link is dropped, the room carries on here,
    // and the line that was in flight is not lost.
    let lost = next_of(&mut amy, "notice");
    assert!(lost["text"].as_str().unwrap().contains("lost its link"), "{lost}");
    assert_eq!(messages(&mut amy, 1)[0]["text"], "while redis is stuck");
    assert_eq!(messages(&mut ann, 1)[0]["text"], "while redis is stuck");
    a.wait_for_log("no reply for 5s");
    redis.resume();
    let back = next_of(&mut amy, "notice");
    assert!(back["text"].as_str().unwrap().contains("linked to the others again"), "{back}");
}
