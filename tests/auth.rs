//! Signed connection tokens against the real server: tokens minted here with the
//! `jsonwebtoken` crate (HS256 with a secret file, ES256 with a key pair made by `rcgen`),
//! presented as `?token=` or `Authorization: Bearer`, refused with 401 and a reason when they
//! are not good, never written to the log, and checked against keys SIGHUP reloads. Each
//! scenario runs against one process and against two processes sharing a Redis, its clients
//! and requests spread over both (`both_modes!`, `tests/common/chat.rs`).

mod common;

use common::{
    both_modes, hs256, read_http_head, recv_text, recv_until, send, Chat, Mode, TempDir, TestServer,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::Write;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use wschat::wire::UpgradeRequest;

const SECRET: &[u8] = b"a test secret that is long enough!";

fn now() -> u64 {
    common::unix_now()
}

fn valid(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600})
}

/// The status line and body of the answer to an upgrade at `path` (with extra headers).
fn answer(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut stream = server.tcp();
    let host = server.addr.to_string();
    let mut request = UpgradeRequest::new(&host, path);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    stream.write_all(&request.to_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    let mut body = String::new();
    if !head.starts_with("HTTP/1.1 101") {
        let _ = std::io::Read::read_to_string(&mut stream, &mut body);
    }
    (head.lines().next().unwrap_or_default().to_string(), body.trim().to_string())
}

both_modes!(a_valid_token_signs_in_as_its_sub_by_query_or_bearer_header(mode));
fn a_valid_token_signs_in_as_its_sub_by_query_or_bearer_header(mode: Mode) {
    let keys = TempDir::new("valid");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET)]);
    let token = hs256(SECRET, valid("alice"));
    let mut alice = chat.connect(&format!("/?token={token}&nick=mallory"));
    assert!(
        recv_text(&mut alice).starts_with("*** welcome, you are alice in lobby"),
        "the nick is the token's sub"
    );

    let process = chat.next_process();
    let mut request = process.url("/").into_client_request().unwrap();
    let bearer = format!("Bearer {}", hs256(SECRET, valid("bob")));
    request.headers_mut().insert("Authorization", HeaderValue::from_str(&bearer).unwrap());
    let (mut bob, _) = tungstenite::client(request, process.tcp()).unwrap();
    assert!(recv_text(&mut bob).starts_with("*** welcome, you are bob in lobby"));

    // Without a token: a guest, who cannot choose a nick, nor take a signed-in user's.
    let mut guest = chat.connect("/?nick=a1ice");
    assert_eq!(
        recv_text(&mut guest),
        "*** nick \"a1ice\" refused: guests cannot choose a nick; sign in with a token"
    );
    let welcome = recv_text(&mut guest);
    assert!(welcome.starts_with("*** welcome, you are guest-1 "), "{welcome}");
    send(&mut guest, "/nick ALICE");
    assert!(recv_until(&mut guest, |t| t.starts_with("*** error:")).contains("/nick is not available"));
}

both_modes!(bad_tokens_get_401_with_the_reason(mode));
fn bad_tokens_get_401_with_the_reason(mode: Mode) {
    let keys = TempDir::new("bad");
    let chat = Chat::start(
        mode,
        &[
            "--jwt-secret",
            &keys.file("secret", SECRET),
            "--jwt-audience",
            "chat",
            "--jwt-issuer",
            "https://app.example",
        ],
    );
    let claims = |extra: Value| {
        let mut claims =
            json!({"sub": "alice", "exp": now() + 600, "aud": "chat", "iss": "https://app.example"});
        for (key, value) in extra.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    let good = hs256(SECRET, claims(json!({})));
    assert_eq!(
        answer(chat.next_process(), &format!("/?token={good}"), &[]).0,
        "HTTP/1.1 101 Switching Protocols"
    );
    let cases = [
        (hs256(SECRET, claims(json!({"exp": now() - 5}))), "token expired"),
        (hs256(SECRET, claims(json!({"nbf": now() + 600}))), "token not yet valid"),
        (hs256(SECRET, claims(json!({"aud": "other"}))), "wrong token audience"),
        (hs256(SECRET, claims(json!({"iss": "https://evil.example"}))), "wrong token issuer"),
        (hs256(b"another secret that is long enough", claims(json!({}))), "bad token signature"),
        (hs256(SECRET, claims(json!({"sub": "two words"}))), "the token's sub is not a valid nick"),
        // alg: none, header {"alg":"none","typ":"JWT"}, with the good token's claims.
        (
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", good.split('.').nth(1).unwrap()),
            "malformed token",
        ),
    ];
    for (token, reason) in cases {
        let (status, body) = answer(chat.next_process(), &format!("/?token={token}"), &[]);
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{reason}");
        assert!(body.starts_with(reason), "{reason}: {body}");
    }
    let log = chat.log().join("\n");
    assert!(!log.contains(&good[20..]), "a token was logged");
}

both_modes!(a_public_key_server_takes_es256_and_refuses_hs256_made_with_its_public_key(mode));
fn a_public_key_server_takes_es256_and_refuses_hs256_made_with_its_public_key(mode: Mode) {
    let keys = TempDir::new("es256");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = pair.public_key_pem();
    let chat = Chat::start(
        mode,
        &["--jwt-public-key", &keys.file("public.pem", public.as_bytes()), "--log-level", "trace"],
    );
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &valid("carol"),
        &EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let mut carol = chat.connect(&format!("/?token={es256}"));
    assert!(recv_text(&mut carol).starts_with("*** welcome, you are carol "));
    // wschat-token signs with the private half just as well.
    let private = keys.file("private.pem", pair.serialize_pem().as_bytes());
    let made = wschat_token(&["--jwt-private-key", &private, "dave"]);
    let mut dave = chat.connect(&format!("/?token={made}"));
    assert!(recv_text(&mut dave).starts_with("*** welcome, you are dave "));
    let confused = hs256(public.as_bytes(), valid("carol"));
    let (status, body) = answer(chat.next_process(), &format!("/?token={confused}"), &[]);
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 401 Unauthorized", "token algorithm not accepted")
    );
    // At the most verbose level, no token text reaches the log.
    let log = chat.log().join("\n");
    for token in [&es256, &confused] {
        assert!(!log.contains(token.split('.').nth(2).unwrap()), "token signature in the log");
        assert!(!log.contains(token.split('.').nth(1).unwrap()), "token claims in the log");
    }
}

both_modes!(require_auth_refuses_anyone_without_a_token(mode));
fn require_auth_refuses_anyone_without_a_token(mode: Mode) {
    let keys = TempDir::new("require");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET), "--require-auth"]);
    let (status, body) = answer(chat.next_process(), "/", &[]);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    assert!(body.contains("a token is required"), "{body}");
    assert_eq!(answer(chat.next_process(), "/echo", &[]).0, "HTTP/1.1 401 Unauthorized", "/echo too");
    let token = hs256(SECRET, valid("dave"));
    assert_eq!(
        answer(chat.next_process(), &format!("/echo?token={token}"), &[]).0,
        "HTTP/1.1 101 Switching Protocols"
    );
    // The page itself is not a WebSocket: it is served, so it can sign in.
    let page = common::http_exchange(chat.next_process(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"));
}

both_modes!(sighup_rereads_the_keys(mode));
fn sighup_rereads_the_keys(mode: Mode) {
    let keys = TempDir::new("reload");
    let secret_file = keys.file("secret", SECRET);
    let chat = Chat::start(mode, &["--jwt-secret", &secret_file]);
    // Every process is asked: each holds the keys it read itself.
    let answers = |token: &str| -> Vec<String> {
        chat.processes().iter().map(|process| answer(process, &format!("/?token={token}"), &[]).0).collect()
    };
    let everywhere = |status: &str| vec![status.to_string(); chat.processes().len()];
    let old = hs256(SECRET, valid("erin"));
    assert_eq!(answers(&old), everywhere("HTTP/1.1 101 Switching Protocols"));
    let rotated = b"the rotated secret, also long enough";
    keys.file("secret", rotated);
    chat.signal("HUP");
    for process in chat.processes() {
        process.wait_for_log("SIGHUP: JWT keys reloaded");
    }
    assert_eq!(answers(&old), everywhere("HTTP/1.1 401 Unauthorized"));
    let new = hs256(rotated, valid("erin"));
    assert_eq!(answers(&new), everywhere("HTTP/1.1 101 Switching Protocols"));
    // A key file that cannot be used keeps the keys in force.
    keys.file("secret", b"short");
    chat.signal("HUP");
    for process in chat.processes() {
        process.wait_for_log("keeping the current JWT keys");
    }
    assert_eq!(answers(&new), everywhere("HTTP/1.1 101 Switching Protocols"));
}

// One process only: a start-up failure, before any chat exists.
#[test]
fn a_key_file_that_cannot_be_used_stops_the_server_at_start_naming_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wschat-server"))
        .args(["127.0.0.1:0", "--jwt-public-key", "/nonexistent/key.pem"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/key.pem"), "{stderr}");
}

both_modes!(moderators_kick_and_ban(mode));
fn moderators_kick_and_ban(mode: Mode) {
    let keys = TempDir::new("moderation");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET)]);
    let root_token = hs256(SECRET, json!({"sub": "root", "exp": now() + 600, "role": "admin"}));
    let alice_token = hs256(SECRET, valid("alice"));
    let mut root = chat.connect(&format!("/?token={root_token}"));
    recv_until(&mut root, |t| t.starts_with("*** welcome"));
    let mut alice = chat.connect(&format!("/?token={alice_token}"));
    recv_until(&mut alice, |t| t.starts_with("*** welcome"));
    send(&mut alice, "/help");
    let help = recv_until(&mut alice, |t| t.starts_with("*** commands:"));
    assert!(help.contains("/token JWT") && !help.contains("/kick") && !help.contains("/nick"), "{help}");
    send(&mut root, "/help");
    assert!(recv_until(&mut root, |t| t.starts_with("*** commands:")).contains("/ban NICK TIME"));
    send(&mut alice, "/kick root");
    assert_eq!(
        recv_until(&mut alice, |t| t.starts_with("*** error")),
        "*** error: only moderators can /kick"
    );

    send(&mut root, "/kick alice calm down");
    let (code, reason) = common::expect_close(&mut alice);
    assert_eq!((u16::from(code), reason.as_str()), (4000, "kicked by root: calm down"));
    recv_until(&mut root, |t| t == "*** alice left lobby (kicked by root: calm down)");

    let mut alice = chat.connect(&format!("/?token={alice_token}"));
    recv_until(&mut alice, |t| t.starts_with("*** welcome"));
    send(&mut root, "/ban alice 10m rude");
    let (code, reason) = common::expect_close(&mut alice);
    assert_eq!((u16::from(code), reason.as_str()), (4000, "banned by root: rude"));
    let (status, body) = answer(chat.next_process(), &format!("/?token={alice_token}"), &[]);
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    let fresh = ["you are banned from this chat for 10m 0s more", "you are banned from this chat for 9m"];
    assert!(fresh.iter().any(|f| body.starts_with(f)) && body.ends_with(": rude"), "{body}");

    // A guest is banned by address: the next guest from there is refused, signed-in users are not.
    let mut guest = chat.connect("/");
    let guest_nick = recv_text(&mut guest).split(' ').nth(4).unwrap().to_string();
    send(&mut root, &format!("/ban {guest_nick} 1h"));
    common::expect_close(&mut guest);
    assert_eq!(answer(chat.next_process(), "/", &[]).0, "HTTP/1.1 403 Forbidden");
    send(&mut root, "/bans");
    let bans = recv_until(&mut root, |t| t.starts_with("*** bans:"));
    assert!(bans.contains("alice, by root") && bans.contains("(guest, address 127.0.0.1)"), "{bans}");
}

// One process only: bans outlive a restart in --data-dir, which is refused with --redis.
#[test]
fn bans_survive_a_restart() {
    let keys = TempDir::new("restart");
    let data = keys.0.join("data");
    let secret = keys.file("secret", SECRET);
    let flags = ["--jwt-secret", secret.as_str(), "--data-dir", data.to_str().unwrap()];
    let mut server = TestServer::start(&flags);
    let root_token = hs256(SECRET, json!({"sub": "root", "exp": now() + 600, "role": "admin"}));
    let alice_token = hs256(SECRET, valid("alice"));
    let mut root = server.connect(&format!("/?token={root_token}"));
    recv_until(&mut root, |t| t.starts_with("*** welcome"));
    let mut alice = server.connect(&format!("/?token={alice_token}"));
    recv_until(&mut alice, |t| t.starts_with("*** welcome"));
    send(&mut root, "/ban alice 10m rude");
    let (code, reason) = common::expect_close(&mut alice);
    assert_eq!((u16::from(code), reason.as_str()), (4000, "banned by root: rude"));
    assert_eq!(answer(&server, &format!("/?token={alice_token}"), &[]).0, "HTTP/1.1 403 Forbidden");
    drop(root);

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = TestServer::start(&flags);
    assert_eq!(
        answer(&server, &format!("/?token={alice_token}"), &[]).0,
        "HTTP/1.1 403 Forbidden",
        "kept across a restart"
    );
    let mut root = server.connect(&format!("/?token={root_token}"));
    recv_until(&mut root, |t| t.starts_with("*** welcome"));
    send(&mut root, "/unban alice");
    recv_until(&mut root, |t| t == "*** alice may come back");
    assert_eq!(answer(&server, &format!("/?token={alice_token}"), &[]).0, "HTTP/1.1 101 Switching Protocols");
}

both_modes!(token_renews_a_session_only_with_the_same_users_valid_token(mode));
fn token_renews_a_session_only_with_the_same_users_valid_token(mode: Mode) {
    let keys = TempDir::new("renew");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET)]);
    let mut ann = chat.connect(&format!("/?token={}", hs256(SECRET, valid("ann"))));
    recv_until(&mut ann, |t| t.starts_with("*** welcome"));
    let newer = hs256(SECRET, json!({"sub": "ann", "exp": now() + 7200}));
    send(&mut ann, &format!("/token {newer}"));
    assert!(recv_until(&mut ann, |t| t.starts_with("*** session renewed"))
        .starts_with("*** session renewed for 7"));
    send(&mut ann, &format!("/token {}", hs256(SECRET, valid("bob"))));
    assert_eq!(
        recv_until(&mut ann, |t| t.starts_with("*** error")),
        "*** error: that token is for another user"
    );
    send(&mut ann, "/token not.a.token");
    assert_eq!(
        recv_until(&mut ann, |t| t.starts_with("*** error")),
        "*** error: token refused: malformed token"
    );
    assert!(!chat.log().join("\n").contains(newer.split('.').nth(2).unwrap()), "no token in the log");
}

both_modes!(session_answers_what_the_handshake_would(mode));
fn session_answers_what_the_handshake_would(mode: Mode) {
    let keys = TempDir::new("session");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET), "--require-auth"]);
    let get = |path: &str| {
        common::http_exchange(chat.next_process(), &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
    };
    assert!(get(&format!("/session?token={}", hs256(SECRET, valid("fay"))))
        .starts_with("HTTP/1.1 204 No Content"));
    let refused = get(&format!("/session?token={}", hs256(SECRET, json!({"sub": "fay", "exp": now() - 10}))));
    assert!(
        refused.starts_with("HTTP/1.1 401") && refused.trim_end().ends_with("token expired"),
        "{refused}"
    );
    assert!(get("/session").starts_with("HTTP/1.1 401"), "no token, --require-auth");
}

both_modes!(private_rooms_are_only_for_the_users_their_tokens_name(mode));
fn private_rooms_are_only_for_the_users_their_tokens_name(mode: Mode) {
    let keys = TempDir::new("private");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET)]);
    let signed = |claims: Value| {
        let mut ws = chat.connect(&format!("/?token={}", hs256(SECRET, claims)));
        recv_until(&mut ws, |t| t.starts_with("*** welcome"));
        ws
    };
    let mut ops = signed(json!({"sub": "olga", "exp": now() + 600, "rooms": ["+ops"]}));
    send(&mut ops, "/join +ops");
    recv_until(&mut ops, |t| t == "*** olga joined +ops");
    send(&mut ops, "secret plans");
    recv_until(&mut ops, |t| t == "olga: secret plans");

    let mut outsider = signed(valid("otto"));
    send(&mut outsider, "/join +ops");
    assert_eq!(recv_until(&mut outsider, |t| t.starts_with("*** error")), "*** error: no such room");
    send(&mut outsider, "/rooms");
    assert_eq!(recv_until(&mut outsider, |t| t.starts_with("*** rooms:")), "*** rooms: lobby (1)");
    let mut sneaky = chat.connect(&format!("/?token={}&room=%2Bops", hs256(SECRET, valid("sam"))));
    assert_eq!(recv_text(&mut sneaky), "*** error: no such room");
    assert!(recv_text(&mut sneaky).starts_with("*** welcome, you are sam in lobby"));

    let mut admin = signed(json!({"sub": "ada", "exp": now() + 600, "role": "admin"}));
    send(&mut admin, "/join +ops");
    recv_until(&mut admin, |t| t == "*** recent messages in +ops:");
    assert_eq!(recv_text(&mut admin), "olga: secret plans");
    let (status, body) =
        answer(chat.next_process(), &format!("/?token={}", hs256(SECRET, valid("guest-7"))), &[]);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    assert!(body.contains("guest- names are for guests"), "{body}");
}

both_modes!(an_expired_session_keeps_nothing_but_the_way_back(mode));
fn an_expired_session_keeps_nothing_but_the_way_back(mode: Mode) {
    let keys = TempDir::new("expired");
    let chat = Chat::start(mode, &["--jwt-secret", &keys.file("secret", SECRET)]);
    let mut bob = chat.connect(&format!("/?token={}", hs256(SECRET, valid("bob"))));
    recv_until(&mut bob, |t| t.starts_with("*** welcome"));
    // An admin whose token ends in a few seconds, in a private room its token names.
    let short = json!({"sub": "ada", "exp": now() + 4, "role": "admin", "rooms": ["+ops"]});
    let mut ada = chat.connect(&format!("/?token={}", hs256(SECRET, short)));
    recv_until(&mut ada, |t| t.starts_with("*** welcome"));
    send(&mut ada, "/join +ops");
    recv_until(&mut ada, |t| t == "*** ada joined +ops");

    recv_until(&mut ada, |t| t == "*** your session expired; send /token NEWTOKEN");
    // Its rights went with the token: out of the private room.
    recv_until(&mut ada, |t| t == "*** ada joined lobby");
    let expired = "*** error: session expired: send /token NEWTOKEN";
    for line in [
        "still here?",
        "/me waves",
        "/msg bob psst",
        "/ban bob 10m",
        "/kick bob",
        "/join +ops",
        "/nick eve",
        "/who",
    ] {
        send(&mut ada, line);
        assert_eq!(recv_until(&mut ada, |t| t.starts_with("*** error")), expired, "{line}");
    }

    // The way back stays open: a new token for the same user, this time without the rights.
    send(&mut ada, &format!("/token {}", hs256(SECRET, valid("ada"))));
    recv_until(&mut ada, |t| t.starts_with("*** session renewed"));
    send(&mut ada, "back again");
    send(&mut ada, "/join +ops");
    assert_eq!(recv_until(&mut ada, |t| t.starts_with("*** error")), "*** error: no such room");
    // Bob was neither banned nor kicked, and heard nothing ada said while expired: her first
    // line after the renewal is the first of hers he gets.
    assert_eq!(recv_until(&mut bob, |t| t.starts_with("ada") || t.starts_with("* ada")), "ada: back again");
}

both_modes!(a_token_sent_to_a_server_without_keys_is_said_to_be_unchecked(mode));
fn a_token_sent_to_a_server_without_keys_is_said_to_be_unchecked(mode: Mode) {
    let chat = Chat::start(mode, &[]);
    let mut ws = chat.connect(&format!("/?token={}", hs256(SECRET, valid("ann"))));
    assert_eq!(
        recv_text(&mut ws),
        "*** your token was not checked: this server has no sign-in keys, so you join as a guest"
    );
    assert!(recv_text(&mut ws).starts_with("*** welcome, you are guest-"));
    chat.wait_for_log("presented a token, but this server has no sign-in keys");
    // Without a token, nothing is said.
    let mut guest = chat.connect("/");
    assert!(recv_text(&mut guest).starts_with("*** welcome, you are guest-"));
}

/// A token made by the project's own `wschat-token` with `args`.
fn wschat_token(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wschat-token")).args(args).output().unwrap();
    assert!(out.status.success(), "wschat-token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

both_modes!(the_readmes_secret_file_and_wschat_token_sign_in_a_moderator(mode));
fn the_readmes_secret_file_and_wschat_token_sign_in_a_moderator(mode: Mode) {
    let keys = TempDir::new("readme-secret");
    let secret = keys.join("jwt-secret");
    // The README's own command: 64 characters of base64 and a newline.
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 48 /dev/urandom | base64 > {}", secret.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let secret = secret.to_str().unwrap();
    let chat = Chat::start(mode, &["--jwt-secret", secret]);
    let token =
        wschat_token(&["--jwt-secret", secret, "ada", "--role", "admin", "--room", "+ops", "--ttl", "10m"]);
    let mut ada = chat.connect(&format!("/?token={token}"));
    assert!(recv_text(&mut ada).starts_with("*** welcome, you are ada in lobby"));
    send(&mut ada, "/join +ops");
    recv_until(&mut ada, |t| t == "*** ada joined +ops");
    send(&mut ada, "/help");
    assert!(recv_until(&mut ada, |t| t.starts_with("*** commands:")).contains("/ban NICK TIME"));
    // An application signing with the file's text, its newline left out, makes the same key.
    let text = std::fs::read_to_string(secret).unwrap();
    let mut bob = chat.connect(&format!("/?token={}", hs256(text.trim_end().as_bytes(), valid("bob"))));
    assert!(recv_text(&mut bob).starts_with("*** welcome, you are bob "));
}
