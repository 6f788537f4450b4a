//! The bench client against the real server: it connects, measures, reports without loss, and
//! writes its JSON result.

mod common;

use std::process::Command;

use common::TestServer;

#[test]
fn bench_reports_every_delivery_of_a_short_run_as_json() {
    let server = TestServer::start(&[]);
    let json = std::env::temp_dir().join(format!("wschat-bench-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(server.url("/"))
        .args(["--clients", "20", "--senders", "2", "--window", "4", "--duration", "1s", "--warmup", "200ms"])
        .args(["--threads", "2", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("connect: ok=20 failed=0"), "{stdout}");
    let result = std::fs::read_to_string(&json).unwrap();
    let field = |name: &str| -> f64 {
        let at = result.find(&format!("\"{name}\":")).unwrap_or_else(|| panic!("{name} in {result}"));
        let rest = &result[at + name.len() + 3..];
        rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
    };
    assert!(field("sent") > 0.0, "{result}");
    assert_eq!(field("expected"), field("sent") * 20.0, "every client, the sender included, is a receiver");
    assert_eq!(field("lost"), 0.0, "{result}");
    assert_eq!(field("deliveries"), field("expected"));
    assert!(field("latency_p50_us") > 0.0);
    let _ = std::fs::remove_file(json);
}

#[test]
fn bench_refuses_a_window_run_without_self_delivery() {
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .args(["ws://127.0.0.1:1/", "--self-delivery", "false"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rate"));
}

#[test]
fn idle_mode_only_holds_connections() {
    let server = TestServer::start(&[]);
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(server.url("/echo"))
        .args(["--clients", "30", "--idle", "--duration", "300ms", "--warmup", "0s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("connect: ok=30 failed=0"), "{stdout}");
    assert!(!stdout.contains("messages:"), "nothing is sent in idle mode: {stdout}");
}

#[test]
fn a_server_that_cannot_be_reached_is_a_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(format!("ws://{addr}/"))
        .args(["--clients", "3", "--duration", "100ms", "--warmup", "0s", "--connect-timeout", "5s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("connect: ok=0 failed=3"), "{stdout}");
}
