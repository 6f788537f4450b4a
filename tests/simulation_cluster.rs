//! Cluster mode in the simulation (`wschat::sim::SimCluster`): two or three real hubs and
//! chats, each with the server's own Redis broker, over a simulated Redis with random delays,
//! per-channel order only, cut links and restarts, all from a seed on a virtual clock.
//!
//! The fixed tests show the cluster doing what `tests/cluster.rs` shows against a real
//! `redis-server`; the properties play random scripts (`wschat::sim::script`) and check after
//! each that every member saw each room in one order, that no id was given twice, that a
//! client's own notices reached it, and that nothing was lost while the links were up.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use wschat::sim::cluster::{Member, SimCluster};
use wschat::sim::script::{self, Action, Script};

fn json(cluster: &mut SimCluster, member: Member) -> Vec<Value> {
    cluster.texts(member).iter().map(|t| serde_json::from_str(t).expect("JSON")).collect()
}

/// The texts of the room messages a client got live.
fn live(cluster: &mut SimCluster, member: Member) -> Vec<String> {
    json(cluster, member)
        .into_iter()
        .filter(|v| v["type"] == "message" && v["replay"].is_null())
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

fn cluster(processes: usize, seed: u64) -> SimCluster {
    SimCluster::new(&SimCluster::settings(), processes, seed, Duration::from_millis(3))
}

#[test]
fn members_on_two_processes_see_one_another_in_one_order() {
    let mut cluster = cluster(2, 1);
    let ann = cluster.connect(0, "/?nick=ann");
    // Bob comes once Ann is in: a join is not kept, so one made while Ann's process was still
    // subscribing would be hers to miss (as with a real Redis), whatever the seed.
    cluster.settle();
    let bob = cluster.connect(1, "/?nick=bob");
    cluster.settle();
    for i in 0..5 {
        cluster.send_text(ann, &format!("a{i}"));
        cluster.send_text(bob, &format!("b{i}"));
    }
    cluster.settle();
    let (seen_by_ann, seen_by_bob) = (live(&mut cluster, ann), live(&mut cluster, bob));
    assert_eq!(seen_by_ann.len(), 10, "{seen_by_ann:?}");
    assert_eq!(seen_by_ann, seen_by_bob, "one order for both");
    let joined = json(&mut cluster, ann).into_iter().any(|v| v["type"] == "joined" && v["nick"] == "bob");
    assert!(joined, "bob's join on the other process reached ann: {:#?}", json(&mut cluster, ann));
}

/// A script the properties found once the simulation ran the real broker: stalls, cuts and
/// hang-ups left lines Redis never confirmed in rooms nobody on their process was in any more;
/// the broker handed them back as unsent and the chat said them again, to and fro for ever,
/// and the cluster never settled. Now such a line is dropped: nobody here is left to hear it.
#[test]
fn lines_handed_back_after_a_stall_and_cuts_do_not_hold_the_loop() {
    use script::Action::*;
    let actions = vec![
        Say { member: 2 },
        Wait { micros: 2947 },
        Connect { process: 1, nick: None, room: 2 },
        Stall { process: 0, millis: 5476 },
        Wait { micros: 2386229 },
        Say { member: 6 },
        Heal { process: 0 },
        Connect { process: 0, nick: Some(1), room: 0 },
        Join { member: 6, room: 1 },
        HangUp { member: 3 },
        Say { member: 5 },
        Wait { micros: 1420 },
        Join { member: 2, room: 0 },
        Say { member: 4 },
        Connect { process: 2, nick: Some(2), room: 1 },
        Join { member: 0, room: 1 },
        Heal { process: 1 },
        Heal { process: 1 },
        Say { member: 1 },
        Say { member: 5 },
        Say { member: 0 },
        Cut { process: 2, silent: true },
        Wait { micros: 4648 },
        Join { member: 7, room: 2 },
        Say { member: 0 },
        Say { member: 7 },
        Say { member: 0 },
        Say { member: 2 },
        Cut { process: 1, silent: false },
        Say { member: 5 },
        Join { member: 2, room: 2 },
        Ask { member: 5, what: 6 },
        Cut { process: 0, silent: true },
        Say { member: 0 },
        Say { member: 1 },
        Cut { process: 2, silent: true },
        Connect { process: 0, nick: Some(3), room: 1 },
        Wait { micros: 6773 },
        Wait { micros: 7959 },
        Say { member: 6 },
        HangUp { member: 5 },
        Ask { member: 3, what: 5 },
        Say { member: 4 },
        Say { member: 1 },
        Say { member: 6 },
        Connect { process: 1, nick: Some(2), room: 0 },
    ];
    let script =
        Script { seed: 11258007553279823981, processes: 2, latency: Duration::from_micros(3486), actions };
    script::run(&script);
}

#[test]
fn a_nick_held_on_one_process_is_refused_on_another() {
    let mut cluster = cluster(2, 2);
    cluster.connect(0, "/?nick=ann");
    cluster.settle();
    let other = cluster.connect(1, "/?nick=ann");
    cluster.settle();
    let welcome = json(&mut cluster, other).into_iter().find(|v| v["type"] == "welcome").unwrap();
    assert!(welcome["nick"].as_str().unwrap().starts_with("guest-"), "{welcome}");
    cluster.send_text(other, "/nick ann");
    cluster.settle();
    let errors: Vec<Value> = json(&mut cluster, other).into_iter().filter(|v| v["type"] == "error").collect();
    assert!(errors.iter().any(|e| e["text"].as_str().unwrap().contains("\"ann\" refused")), "{errors:?}");
}

#[test]
fn a_cut_process_chats_alone_and_joins_up_again() {
    let mut cluster = cluster(2, 3);
    let ann = cluster.connect(0, "/?nick=ann");
    let bob = cluster.connect(1, "/?nick=bob");
    cluster.settle();
    cluster.cut(1, false);
    cluster.settle();
    assert!(!cluster.is_linked(1) && cluster.is_linked(0));
    cluster.send_text(bob, "alone");
    cluster.send_text(ann, "unheard");
    cluster.settle();
    assert_eq!(live(&mut cluster, bob), ["alone"]);
    assert_eq!(live(&mut cluster, ann), ["unheard"]);
    cluster.heal(1);
    cluster.advance(Duration::from_secs(6));
    cluster.settle();
    assert!(cluster.is_linked(1));
    cluster.send_text(bob, "together");
    cluster.settle();
    assert_eq!(live(&mut cluster, ann).last().map(String::as_str), Some("together"));
    let back = json(&mut cluster, bob).into_iter().rfind(|v| v["type"] == "replayed").unwrap();
    assert_eq!(back["recovered"], false, "bob's process replayed the room's shared history");
}

#[test]
fn redis_restarted_without_its_data_starts_new_epochs() {
    let mut cluster = cluster(2, 4);
    let ann = cluster.connect(0, "/?nick=ann");
    let bob = cluster.connect(1, "/?nick=bob");
    cluster.settle();
    cluster.send_text(ann, "before");
    cluster.settle();
    let id = |v: &Value| v["id"].as_str().unwrap().split(':').next().unwrap().to_string();
    let before = json(&mut cluster, bob).into_iter().find(|v| v["text"] == "before").map(|v| id(&v)).unwrap();
    cluster.stop_redis(false);
    cluster.settle();
    cluster.start_redis();
    cluster.advance(Duration::from_secs(6));
    cluster.settle();
    cluster.send_text(ann, "after");
    cluster.settle();
    let after = json(&mut cluster, bob).into_iter().find(|v| v["text"] == "after").map(|v| id(&v)).unwrap();
    assert_ne!(before, after, "a new epoch");
}

/// A fixed script with clients on three processes, moves, renames and no fault: twice from the
/// same seed, the same deliveries.
#[test]
fn a_seed_gives_one_run() {
    let actions = vec![
        Action::Connect { process: 0, nick: Some(0), room: 0 },
        Action::Connect { process: 1, nick: Some(1), room: 0 },
        Action::Connect { process: 2, nick: None, room: 1 },
        Action::Settle,
        Action::Say { member: 0 },
        Action::Say { member: 1 },
        Action::Join { member: 2, room: 0 },
        Action::Wait { micros: 1500 },
        Action::Say { member: 2 },
        Action::Nick { member: 1, nick: 3 },
        Action::Say { member: 1 },
        Action::Join { member: 0, room: 2 },
        Action::Say { member: 0 },
        Action::Settle,
        Action::Say { member: 2 },
    ];
    let script = Script { seed: 9, processes: 3, latency: Duration::from_millis(2), actions };
    let first = script::run(&script);
    assert!(first.checked_deliveries > 5, "{first:?}");
    assert_eq!(script::run(&script), first);
}

/// A client's own join is published through Redis and comes back on the subscription; if the
/// link fails while it is on its way, the broker announces it on the process instead (as it
/// says again the room messages Redis never confirmed), so the client is always told it
/// joined. (Found by the properties: it once sat in the room without ever being told.)
#[test]
fn a_client_is_told_of_its_own_join_even_when_the_link_fails_meanwhile() {
    let mut cluster = cluster(2, 6);
    let ann = cluster.connect(0, "/?nick=ann");
    // Until its replay arrives: its join is announced in the same turn, and is on the wire.
    while !json(&mut cluster, ann).iter().any(|v| v["type"] == "replayed") {
        cluster.advance(Duration::from_micros(100));
    }
    cluster.cut(0, false);
    cluster.settle();
    cluster.heal(0);
    cluster.advance(Duration::from_secs(6));
    cluster.settle();
    let joined = json(&mut cluster, ann).into_iter().any(|v| v["type"] == "joined" && v["nick"] == "ann");
    assert!(joined, "ann was never told it joined: {:?}", cluster.texts(ann));
}

/// Two clients of one process ask for the same free nick in the same turn; both claims are
/// on their way to Redis when the link fails. The broker answers both here, as the in-process
/// broker would: granted. The chat renames the first and refuses the second (the nick is no
/// longer free here). (Found by the properties: the second was once left unanswered.)
#[test]
fn every_nick_change_is_answered_even_when_the_link_fails_before_redis_does() {
    let mut cluster = cluster(2, 7);
    let (ann, bob) = (cluster.connect(0, "/?nick=ann"), cluster.connect(0, "/?nick=bob"));
    cluster.settle();
    cluster.send_text(ann, "/nick cy");
    cluster.send_text(bob, "/nick cy");
    cluster.step();
    cluster.cut(0, false);
    cluster.settle();
    let answered =
        |cluster: &SimCluster, member| cluster.seen(member).nick_answers.contains(&"cy".to_string());
    assert!(
        answered(&cluster, ann) && answered(&cluster, bob),
        "{:?}",
        [ann, bob].map(|m| cluster.seen(m).nick_answers.clone())
    );
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0usize..3, prop::option::weighted(0.7, 0usize..5), 0usize..3)
            .prop_map(|(process, nick, room)| Action::Connect { process, nick, room }),
        8 => (0usize..8).prop_map(|member| Action::Say { member }),
        2 => (0usize..8, 0usize..3).prop_map(|(member, room)| Action::Join { member, room }),
        1 => (0usize..8, 0usize..5).prop_map(|(member, nick)| Action::Nick { member, nick }),
        1 => (0usize..8, 0usize..8).prop_map(|(member, what)| Action::Ask { member, what }),
        1 => (0usize..8).prop_map(|member| Action::HangUp { member }),
        3 => (0u64..8000).prop_map(|micros| Action::Wait { micros }),
        1 => Just(Action::Settle),
    ]
}

fn fault() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0usize..3, any::<bool>()).prop_map(|(process, silent)| Action::Cut { process, silent }),
        1 => (0usize..3, 0u64..8000).prop_map(|(process, millis)| Action::Stall { process, millis }),
        2 => (0usize..3).prop_map(|process| Action::Heal { process }),
        1 => any::<bool>().prop_map(|keep_data| Action::StopRedis { keep_data }),
        1 => Just(Action::StartRedis),
        2 => (0u64..3_000_000).prop_map(|micros| Action::Wait { micros }),
    ]
}

fn script(actions: impl Strategy<Value = Vec<Action>>) -> impl Strategy<Value = Script> {
    (any::<u64>(), 2usize..4, 0u64..5000, actions).prop_map(|(seed, processes, latency, actions)| Script {
        seed,
        processes,
        latency: Duration::from_micros(latency),
        actions,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// With every link up: one order, one message per id, own notices, nothing lost.
    #[test]
    fn with_links_up_every_member_gets_everything_in_one_order(
        script in script(prop::collection::vec(action(), 1..40))
    ) {
        let outcome = script::run(&script);
        prop_assert!(outcome.shared_nicks.is_empty(), "{:?}", outcome.shared_nicks);
    }

    /// With links cut, healed, Redis stopped and started (with or without its data): the same
    /// rules, "nothing lost" for what was said while nothing was wrong.
    #[test]
    fn through_cuts_and_restarts_the_rules_hold(
        script in script(prop::collection::vec(prop_oneof![4 => action(), 1 => fault()], 1..50))
    ) {
        script::run(&script);
    }
}

/// Two processes hand out guest nicks alone while Redis is out of reach (each counts from 1).
/// Process 0 comes back first and keeps guest-1 and guest-2; process 1's guest-1 is taken, so
/// it is given a guest nick from Redis's counter: guest-1 (taken, it is told again), then
/// guest-2, taken too, then guest-3. (Found by the properties: a refused replacement was once
/// dropped, and two clients held guest-1.)
#[test]
fn a_nick_taken_elsewhere_is_given_up_even_when_its_replacement_is_taken_too() {
    let mut cluster = cluster(2, 5);
    cluster.cut(0, false);
    cluster.cut(1, false);
    cluster.settle();
    let here = [cluster.connect(0, "/"), cluster.connect(0, "/")];
    let there = cluster.connect(1, "/");
    cluster.settle();
    cluster.heal(0);
    cluster.advance(Duration::from_secs(6));
    cluster.settle();
    cluster.heal(1);
    cluster.advance(Duration::from_secs(6));
    cluster.settle();
    // The server's view: a client cannot tell its own rename from another's while the two
    // still share the old nick (both hear `guest-1 is now known as ...`).
    let nicks: Vec<String> =
        [here[0], here[1], there].map(|m| cluster.nick(m).unwrap_or("").to_string()).to_vec();
    assert_eq!(nicks[..2], ["guest-1", "guest-2"]);
    assert!(!nicks[..2].contains(&nicks[2]), "two clients hold one nick: {nicks:?}");
}

/// Found by the properties once the simulation ran the real broker: a guest's own join came
/// back from Redis and its `/join lobby` was read in the same turn, before the chat had the
/// join; it moved on first and never heard it. A sender is now let go only once the chat has
/// what it sent.
#[test]
fn a_client_hears_its_own_join_before_what_it_sent_next_is_answered() {
    use script::Action::*;
    let actions = vec![
        Connect { process: 2, nick: Some(2), room: 0 },
        Connect { process: 1, nick: Some(1), room: 2 },
        Settle,
        Say { member: 2 },
        Say { member: 1 },
        Connect { process: 1, nick: None, room: 2 },
        Say { member: 3 },
        Join { member: 2, room: 0 },
        Wait { micros: 5212 },
        Wait { micros: 7723 },
        Say { member: 2 },
        Wait { micros: 2894 },
    ];
    script::run(&Script {
        seed: 12020084846304412212,
        processes: 2,
        latency: Duration::from_micros(3816),
        actions,
    });
}
