//! `wschat-bench --deflate`, `--json-mode` and `--text-size` against the real server: the
//! same chat-like load costs fewer bytes on the wire per delivery compressed, every delivery is
//! still found inside the compressed messages, a server that declines is said to, and JSON
//! mode's history replays do not count.

mod common;

use std::process::Command;

use common::TestServer;

/// Runs `wschat-bench URL ARGS... --json FILE` (`args` split on whitespace), which must
/// succeed; its stdout and the JSON it wrote.
fn bench_json(url: &str, args: &str) -> (String, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let json = std::env::temp_dir().join(format!("wschat-bench-deflate-{}-{n}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(url)
        .args(args.split_whitespace())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(json);
    (stdout, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

const TEXT_LOAD: &str =
    "--clients 20 --senders 2 --window 4 --duration 1s --warmup 200ms --json-mode --text-size 100..500";

fn number(result: &serde_json::Value, field: &str) -> f64 {
    result[field].as_f64().unwrap_or_else(|| panic!("{field} in {result}"))
}

#[test]
fn deflate_puts_fewer_bytes_on_the_wire_per_delivery_for_the_same_chat_text() {
    let server = TestServer::start(&[]);
    let (plain_out, plain) = bench_json(&server.url("/"), TEXT_LOAD);
    let (deflate_out, deflate) = bench_json(&server.url("/"), &format!("{TEXT_LOAD} --deflate"));
    for (stdout, result) in [(&plain_out, &plain), (&deflate_out, &deflate)] {
        assert!(number(result, "deliveries") > 0.0, "{stdout}");
        assert_eq!(number(result, "lost"), 0.0, "every delivery found, compressed or not: {stdout}");
        assert!(stdout.contains(" bytes on the wire per delivery"), "{stdout}");
        assert_eq!(result["json_mode"], true);
        assert_eq!(result["text_size"], "100..500");
    }
    assert_eq!((deflate["deflate"].as_bool(), number(&deflate, "handshakes_deflate")), (Some(true), 20.0));
    assert_eq!(number(&plain, "handshakes_deflate"), 0.0);
    assert!(deflate_out.contains("deflate: negotiated on 20 of 20 connections"), "{deflate_out}");
    assert!(!deflate_out.contains("warning: the server declined"), "{deflate_out}");

    let (plain_wire, deflate_wire) =
        (number(&plain, "wire_bytes_per_delivery"), number(&deflate, "wire_bytes_per_delivery"));
    let (plain_message, deflate_message) =
        (number(&plain, "message_bytes_per_delivery"), number(&deflate, "message_bytes_per_delivery"));
    // The same load: JSON objects of a 100-500 byte line, about 400 bytes, either way.
    assert!((300.0..500.0).contains(&plain_message), "{plain_message}");
    assert!((deflate_message / plain_message - 1.0).abs() < 0.1, "{deflate_message} vs {plain_message}");
    assert!(plain_wire >= plain_message, "uncompressed, the wire carries the messages and their headers");
    assert!(
        deflate_wire < 0.85 * plain_wire,
        "compressed {deflate_wire} vs plain {plain_wire} bytes per delivery"
    );
    assert!(deflate_wire < deflate_message, "{deflate_wire} on the wire for {deflate_message} inflated");
}

#[test]
fn a_server_that_declines_deflate_is_said_to_and_the_run_goes_on_uncompressed() {
    let server = TestServer::start(&["--deflate", "off"]);
    let (stdout, result) = bench_json(&server.url("/"), &format!("{TEXT_LOAD} --deflate"));
    assert!(stdout.contains("deflate: negotiated on 0 of 20 connections"), "{stdout}");
    assert!(stdout.contains("warning: the server declined permessage-deflate on 20 connections"), "{stdout}");
    assert_eq!((number(&result, "handshakes_deflate"), number(&result, "lost")), (0.0, 0.0));
    assert!(number(&result, "deliveries") > 0.0);
}

#[test]
fn json_mode_does_not_count_the_rooms_history_compressed_or_not() {
    // Every churned client that connects again is replayed the room's recent messages
    // ("replay":true), tokens of the measured window and all: counted, they would make more
    // deliveries than messages sent times clients.
    let server = TestServer::start(&[]);
    let args = "--clients 20 --senders 2 --rate 200 --churn 300ms --duration 1500ms --warmup 200ms \
                --json-mode --text-size 100..500 --deflate --inflate-every-frame";
    let (stdout, result) = bench_json(&server.url("/"), args);
    assert!(number(&result, "churn_cycles") >= 20.0, "clients came back during the run: {stdout}");
    let (sent, deliveries) = (number(&result, "sent"), number(&result, "deliveries"));
    assert!(sent > 0.0 && deliveries > 0.0, "{stdout}");
    assert!(
        deliveries <= sent * 20.0,
        "history replays were counted: {deliveries} for {sent} sent: {stdout}"
    );
}
