//! The server's rules exercised through the in-memory simulation (`wschat::sim`): the real
//! hub, connections, chat and fan-out over scripted sockets, with a virtual clock, so slow
//! readers, bursts, pieces and timeouts are exact and instant. Socket-level behaviour is tested
//! against the real binary in the other files.

mod common;

use std::time::Duration;

use wschat::outbox::MAX_CHUNKS;
use wschat::sim::{scenarios::small_limits, ClientIx, Simulation};
use wschat::wire::client_frame;
use wschat::Settings;

/// A lobby with a sender, a reader whose socket takes everything, and a member whose socket
/// takes nothing once it has joined.
fn lobby(settings: Settings) -> (Simulation, ClientIx, ClientIx, ClientIx) {
    let mut sim = Simulation::new(settings);
    let reader = sim.upgrade("/?nick=reader");
    let sleeper = sim.upgrade("/?nick=sleeper");
    let sender = sim.upgrade("/?nick=sender");
    sim.set_window(sleeper, Some(0));
    (sim, sender, reader, sleeper)
}

fn said(sim: &mut Simulation, client: ClientIx) -> Vec<String> {
    sim.texts(client).into_iter().filter(|t| t.starts_with("sender: ")).collect()
}

#[test]
fn a_member_that_never_reads_is_cut_off_and_the_others_get_everything() {
    let (mut sim, sender, reader, sleeper) = lobby(small_limits());
    let max_outbound = sim.settings().max_outbound;
    let line = "y".repeat(1000);
    for i in 0..40 {
        sim.send_text(sender, &format!("{i} {line}"));
        sim.settle();
        assert!(sim.queued(sleeper) <= max_outbound, "queue over --max-outbound after message {i}");
    }
    assert!(!sim.accepts_messages(sleeper), "a member whose socket refuses everything was not cut off");
    let expected: Vec<String> = (0..40).map(|i| format!("sender: {i} {line}")).collect();
    assert_eq!(said(&mut sim, reader), expected);
    assert_eq!(said(&mut sim, sender), expected);
    assert!(sim.is_connected(sleeper), "it is given --close-timeout to take its close frame");
    let close_timeout = sim.settings().close_timeout;
    sim.advance(close_timeout);
    assert!(!sim.is_connected(sleeper), "dropped once the close timed out");
    assert!(sim
        .texts(reader)
        .iter()
        .any(|t| t == "*** sleeper left lobby (too slow: outbound queue limit exceeded)"));
}

#[test]
fn a_member_too_many_frames_behind_is_cut_off_however_few_their_bytes() {
    let mut settings = small_limits();
    settings.max_messages_per_sec = 0;
    settings.max_outbound = 64 << 20; // bytes are not what it runs out of
    let (mut sim, sender, reader, sleeper) = lobby(settings);
    let send = |sim: &mut Simulation, count: usize| {
        for burst in 0..count.div_ceil(64) {
            let burst: Vec<u8> = (0..64.min(count - burst * 64))
                .flat_map(|_| client_frame(0x81, b"x", Some([1, 2, 3, 4])))
                .collect();
            sim.send(sender, &burst);
            sim.settle();
        }
    };
    // Its queue holds a few notices already: well under the limit it still takes everything.
    send(&mut sim, MAX_CHUNKS - 100);
    assert!(sim.accepts_messages(sleeper), "cut off before its queue held MAX_CHUNKS frames");
    send(&mut sim, 200);
    assert!(!sim.accepts_messages(sleeper), "a queue of more than MAX_CHUNKS frames was kept");
    assert!(sim.queued(sleeper) < 64, "what it had not started receiving was dropped");
    assert_eq!(said(&mut sim, reader).len(), MAX_CHUNKS + 100, "the reader got everything");
}

#[test]
fn a_burst_in_one_turn_does_not_cut_off_readers_that_keep_up() {
    let mut settings = small_limits();
    settings.max_messages_per_sec = 0;
    let (mut sim, sender, reader, _sleeper) = lobby(settings);
    // 64 messages of 4 KiB arrive together: 32 times --max-outbound within a single turn.
    let line = "z".repeat(4000);
    let burst: Vec<u8> = (0..64)
        .flat_map(|i| client_frame(0x81, format!("{i} {line}").as_bytes(), Some([1, 2, 3, 4])))
        .collect();
    sim.send(sender, &burst);
    sim.settle();
    assert!(sim.accepts_messages(reader) && sim.accepts_messages(sender));
    assert_eq!(said(&mut sim, reader).len(), 64);
    assert_eq!(said(&mut sim, sender).len(), 64);
}

#[test]
fn a_reader_that_drains_slowly_but_steadily_is_kept() {
    let (mut sim, sender, reader, sleeper) = lobby(small_limits());
    sim.set_window(sleeper, Some(0));
    for i in 0..30 {
        sim.send_text(sender, &format!("{i} {}", "w".repeat(500)));
        sim.settle();
        // It reads a little more than it is sent each turn.
        sim.drain(sleeper, 600);
        sim.settle();
    }
    assert!(sim.accepts_messages(sleeper));
    assert_eq!(said(&mut sim, sleeper).len(), 30);
    assert_eq!(said(&mut sim, reader).len(), 30);
}

#[test]
fn a_client_that_does_not_read_is_not_read_from_until_it_does() {
    let mut settings = small_limits();
    settings.max_messages_per_sec = 0;
    let mut sim = Simulation::new(settings);
    let echo = sim.upgrade("/echo");
    let max_outbound = sim.settings().max_outbound;
    sim.set_window(echo, Some(0));
    for _ in 0..8 {
        sim.send_text(echo, &"e".repeat(4000));
        sim.settle();
        assert!(sim.queued(echo) <= max_outbound);
    }
    // A flood of pings: their pongs would pile up if it were still read.
    let pings: Vec<u8> = (0..2000).flat_map(|_| client_frame(0x89, &[7; 125], Some([1, 2, 3, 4]))).collect();
    sim.send(echo, &pings);
    sim.settle();
    assert!(sim.queued(echo) <= max_outbound, "{} bytes held", sim.queued(echo));
    assert!(sim.accepts_messages(echo), "paused, not cut off");
    sim.set_window(echo, None);
    sim.settle();
    let echoes = sim.frames(echo).iter().filter(|f| f.opcode == 1).count();
    let pongs = sim.frames(echo).iter().filter(|f| f.opcode == 10).count();
    assert_eq!((echoes, pongs), (8, 2000), "once it reads, everything it sent is answered");
}

#[test]
fn messages_split_into_single_bytes_arrive_whole() {
    let mut sim = Simulation::new(small_limits());
    let reader = sim.upgrade("/?nick=reader");
    let sender = sim.upgrade("/?nick=sender");
    sim.set_piece(sender, 1);
    sim.send_text(sender, "hello in pieces");
    sim.settle();
    assert_eq!(said(&mut sim, reader), ["sender: hello in pieces"]);
}

#[test]
fn over_the_rate_limit_a_client_is_closed_and_the_others_are_untouched() {
    let mut sim = Simulation::new(small_limits());
    let reader = sim.upgrade("/?nick=reader");
    let sender = sim.upgrade("/?nick=sender");
    let flood: Vec<u8> =
        (0..60).flat_map(|i| client_frame(0x81, format!("{i}").as_bytes(), Some([9, 9, 9, 9]))).collect();
    sim.send(sender, &flood);
    sim.settle();
    assert_eq!(sim.close_code(sender), Some(1008));
    let got = said(&mut sim, reader).len();
    assert!((1..=50).contains(&got), "at most a second's worth got through, not {got}");
    assert!(sim.accepts_messages(reader));
}

#[test]
fn a_head_that_never_completes_is_dropped_at_the_handshake_timeout() {
    let mut sim = Simulation::new(small_limits());
    let slow = sim.connect(b"GET / HTTP/1.1\r\nHost: x\r\n");
    sim.settle();
    let timeout = sim.settings().handshake_timeout;
    sim.advance(timeout - Duration::from_millis(1));
    assert!(sim.is_connected(slow));
    sim.advance(Duration::from_millis(1));
    assert!(!sim.is_connected(slow));
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let mut sim = Simulation::new(small_limits());
    let quiet = sim.upgrade("/echo");
    let idle = sim.settings().idle_timeout;
    sim.advance(idle / 2);
    assert_eq!(sim.frames(quiet).last().map(|f| f.opcode), Some(9), "pinged halfway");
    sim.advance(idle / 2);
    assert_eq!(sim.close_code(quiet), Some(1001));
}

#[test]
fn a_client_close_is_answered_and_the_connection_ends() {
    let mut sim = Simulation::new(small_limits());
    let client = sim.upgrade("/echo");
    sim.send(client, &client_frame(0x88, &1000u16.to_be_bytes(), Some([5, 6, 7, 8])));
    sim.settle();
    assert_eq!(sim.close_code(client), Some(1000));
    assert!(!sim.is_connected(client));
}

#[test]
fn an_idle_connection_holds_no_protocol_state_and_resumes_mid_message_correctly() {
    let mut sim = Simulation::new(small_limits());
    let echo = sim.upgrade("/echo");
    assert!(sim.is_parked(echo), "nothing read yet");
    let texts = |sim: &mut Simulation| sim.texts(echo);

    // A frame split mid-payload: the state between the halves is kept.
    let whole = client_frame(0x81, b"split in two", Some([1, 2, 3, 4]));
    sim.send(echo, &whole[..9]);
    sim.settle();
    assert!(!sim.is_parked(echo), "half a frame read");
    sim.send(echo, &whole[9..]);
    sim.settle();
    assert_eq!(texts(&mut sim), ["split in two"]);
    assert!(sim.is_parked(echo), "idle again after a whole message");

    // A fragmented message with a ping between its fragments: still one message, pong answered.
    sim.send(echo, &client_frame(0x01, b"frag", Some([5, 6, 7, 8])));
    sim.settle();
    assert!(!sim.is_parked(echo), "a message is under way");
    sim.send(echo, &client_frame(0x89, b"p", Some([5, 6, 7, 8])));
    sim.settle();
    assert!(!sim.is_parked(echo), "a ping does not end the message");
    sim.send(echo, &client_frame(0x80, b"mented", Some([5, 6, 7, 8])));
    sim.settle();
    assert_eq!(texts(&mut sim), ["split in two", "fragmented"]);
    assert!(sim.frames(echo).iter().any(|f| f.opcode == 10 && f.payload == b"p"));
    assert!(sim.is_parked(echo));

    // The keep-alive ping is sent without waking it; a close is answered from parked.
    let idle = sim.settings().idle_timeout;
    sim.advance(idle / 2);
    assert_eq!(sim.frames(echo).last().map(|f| f.opcode), Some(9));
    assert!(sim.is_parked(echo));
    sim.send(echo, &client_frame(0x88, &1000u16.to_be_bytes(), Some([1, 1, 1, 1])));
    sim.settle();
    assert_eq!(sim.close_code(echo), Some(1000));
}

/// Settings that verify HS256 tokens made with `secret`.
fn with_tokens(secret: &[u8]) -> Settings {
    // Read once, by `Auth::load`: the directory can go when this returns.
    let dir = common::TempDir::new("sim-secret");
    let path = dir.file("secret", secret);
    let mut settings = small_limits();
    let files = wschat::auth::AuthFiles { secret: Some(path.into()), ..Default::default() };
    settings.auth = Some(std::sync::Arc::new(wschat::auth::Auth::load(&files).unwrap()));
    settings.chat.token_nicks = true;
    // Silent scripted clients must not be closed as idle while the token clock runs.
    settings.idle_timeout = Duration::from_secs(3600);
    settings
}

fn token(secret: &[u8], sub: &str, lifetime_s: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({"sub": sub, "exp": now + lifetime_s});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn an_expired_session_is_told_then_closed_unless_a_new_token_comes() {
    let secret = b"the simulation's secret, 32 bytes+";
    let mut sim = Simulation::new(with_tokens(secret));
    let lapsing = sim.upgrade(&format!("/?token={}", token(secret, "ann", 60)));
    let renewing = sim.upgrade(&format!("/?token={}", token(secret, "bob", 60)));
    sim.advance(Duration::from_secs(61));
    for client in [lapsing, renewing] {
        assert!(sim.texts(client).iter().any(|t| t == "*** your session expired; send /token NEWTOKEN"));
    }
    sim.send_text(renewing, &format!("/token {}", token(secret, "bob", 3600)));
    sim.settle();
    let texts = sim.texts(renewing);
    assert!(texts.iter().any(|t| t.starts_with("*** session renewed for ")), "{texts:?}");
    sim.advance(wschat::connection::TOKEN_GRACE);
    assert_eq!(sim.close_code(lapsing), Some(1008), "not renewed within the grace period");
    assert_eq!(sim.close_code(renewing), None, "renewed: still in");
    assert!(sim.accepts_messages(renewing));
}

#[test]
fn a_session_is_told_and_closed_on_time_whichever_instant_in_a_millisecond_it_ends() {
    let secret = b"the simulation's secret, 32 bytes+";
    for offset_us in [0, 1, 250, 500, 999] {
        let mut sim = Simulation::new(with_tokens(secret));
        // The loop's clock a fraction of a millisecond past a whole one: the expiry's instant
        // then falls inside the millisecond its timer is set for.
        sim.set_now(sim.now() + Duration::from_micros(offset_us));
        let lapsing = sim.upgrade(&format!("/?token={}", token(secret, "ann", 60)));
        let end = sim.now() + Duration::from_secs(62) + wschat::connection::TOKEN_GRACE;
        // Wake exactly when the server asks to, as the loop does; each wake must move on.
        let mut wakes = 0;
        while let Some(at) = sim.wake_at().filter(|&at| at <= end) {
            wakes += 1;
            assert!(wakes < 100, "{offset_us} us: the server keeps asking to be woken at {at:?}");
            sim.set_now(at);
            sim.step();
            if !sim.accepts_messages(lapsing) {
                break;
            }
        }
        let texts = sim.texts(lapsing);
        assert!(
            texts.iter().any(|t| t == "*** your session expired; send /token NEWTOKEN"),
            "{offset_us} us: {texts:?}"
        );
        assert_eq!(sim.close_code(lapsing), Some(1008), "{offset_us} us: closed once the grace period ended");
    }
}

#[test]
fn a_client_that_pings_and_never_reads_is_not_read_once_its_queue_is_full_of_pongs() {
    let mut settings = small_limits();
    settings.max_messages_per_sec = 0;
    settings.max_outbound = 64 << 20; // bytes are not what it runs out of
    settings.read_pause_bytes = 32 << 20;
    let (mut sim, sender, reader, _sleeper) = lobby(settings);
    let pinger = sim.upgrade("/?nick=pinger");
    sim.set_window(pinger, Some(0));
    let pings: Vec<u8> = (0..1000).flat_map(|_| client_frame(0x89, b"", Some([1, 2, 3, 4]))).collect();
    for _ in 0..(MAX_CHUNKS + 4000) / 1000 {
        sim.send(pinger, &pings);
        sim.settle();
    }
    // Each pong is a 2-byte chunk; past MAX_CHUNKS they would be copied onto the last chunk,
    // one growing copy per ping, instead of the client being left unread.
    assert!(sim.queued(pinger) <= 2 * MAX_CHUNKS, "{} bytes of pongs queued", sim.queued(pinger));
    sim.send_text(sender, "still here");
    sim.settle();
    assert_eq!(said(&mut sim, reader), ["sender: still here"]);
}
