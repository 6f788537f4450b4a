//! The bench client against the real server: it connects, measures, reports without loss, and
//! writes its JSON result.

mod common;

use std::process::Command;

use common::{recv_until, send, TestServer};

/// What a finished `wschat-bench` run printed.
struct Run {
    code: Option<i32>,
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `wschat-bench URL ARGS...` to the end; `args` is split on whitespace.
fn bench(url: &str, args: &str) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(url)
        .args(args.split_whitespace())
        .output()
        .unwrap();
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `wschat-bench URL ARGS... --json FILE`, which must succeed, and returns its output and
/// the JSON it wrote.
fn bench_json(url: &str, args: &str) -> (Run, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let json = std::env::temp_dir().join(format!("wschat-bench-test-{}-{n}.json", std::process::id()));
    let run = bench(url, &format!("{args} --json {}", json.display()));
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(&json).unwrap();
    let _ = std::fs::remove_file(json);
    (run, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[test]
fn bench_reports_every_delivery_of_a_short_run_as_json() {
    let server = TestServer::start(&[]);
    let json = std::env::temp_dir().join(format!("wschat-bench-{}.json", std::process::id()));
    let args = "--clients 20 --senders 2 --window 4 --duration 1s --warmup 200ms --threads 2 --json";
    let run = bench(&server.url("/"), &format!("{args} {}", json.display()));
    let stdout = &run.stdout;
    assert!(run.success, "{stdout}\n{}", run.stderr);
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
    let run = bench("ws://127.0.0.1:1/", "--self-delivery false");
    assert_eq!(run.code, Some(2), "a usage error");
    assert!(run.stderr.contains("--rate"), "{}", run.stderr);
    let run = bench("ws://127.0.0.1:1/", "--size 10");
    assert_eq!(run.code, Some(2), "a usage error: {}", run.stderr);
}

#[test]
fn idle_mode_only_holds_connections() {
    let server = TestServer::start(&[]);
    let run = bench(&server.url("/echo"), "--clients 30 --idle --duration 300ms --warmup 0s");
    let stdout = &run.stdout;
    assert!(run.success, "{stdout}");
    assert!(stdout.contains("connect: ok=30 failed=0"), "{stdout}");
    assert!(!stdout.contains("messages:"), "nothing is sent in idle mode: {stdout}");
}

#[test]
fn the_bench_takes_the_clients_address_forms_and_refuses_others_as_usage_errors() {
    let server = TestServer::start(&[]);
    // HOST:PORT, as the client takes it.
    let run = bench(&server.addr.to_string(), "--clients 2 --duration 300ms --warmup 0s");
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("connect: ok=2 failed=0"), "{}", run.stdout);

    for (url, why) in [
        (format!("http://{}/", server.addr), "http:// is not a WebSocket address"),
        (format!("{}:port", server.addr.ip()), "\"port\" is not a port"),
    ] {
        let run = bench(&url, "--clients 1 --duration 300ms --warmup 0s");
        assert_eq!(run.code, Some(2), "{url}: a usage error: {}", run.stderr);
        assert!(
            run.stderr.contains(why) && run.stderr.contains("HOST:PORT or HOST"),
            "{url}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{url}: nothing ran: {}", run.stdout);
    }
}

#[test]
fn a_server_that_cannot_be_reached_is_a_failure_that_says_why() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let run = bench(&format!("ws://{addr}/"), "--clients 3 --duration 10s --warmup 0s --connect-timeout 5s");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no table of zeros: {}", run.stdout);

    let server = TestServer::start(&[]);
    let run = bench(&server.url("/nope"), "--clients 2 --duration 10s --warmup 0s");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("the server answered 404 Not Found"), "{}", run.stderr);
}

#[test]
fn room_flag_keeps_the_load_out_of_the_lobby() {
    let server = TestServer::start(&[]);
    let mut lobby = server.chat_client("watcher");
    let run = bench(
        &server.url("/"),
        "--clients 3 --senders 1 --window 4 --duration 500ms --warmup 0s --room load",
    );
    let stdout = &run.stdout;
    assert!(run.success, "{stdout}");
    assert!(stdout.contains("lost=0"), "the room's three members get every message: {stdout}");
    assert!(!stdout.contains("sent=0 "), "{stdout}");
    // The lobby saw the bench clients arrive and leave, but none of their traffic: its next
    // chat line is the watcher's own.
    send(&mut lobby, "still quiet here");
    let line = recv_until(&mut lobby, |text| text.contains(": "));
    assert_eq!(line, "watcher: still quiet here");
}

#[test]
fn churn_closes_cleanly_and_reconnects_while_sending() {
    let server = TestServer::start(&["-v"]);
    let run = bench(
        &server.url("/"),
        "--clients 5 --senders 5 --rate 50 --duration 1s --warmup 0s --churn 200ms --room churn --rooms 2",
    );
    let stdout = &run.stdout;
    assert!(run.success, "{stdout}");
    let churn = stdout.lines().find(|l| l.starts_with("churn:")).unwrap_or_else(|| panic!("{stdout}"));
    let number = |name: &str| -> u64 {
        let at = churn.find(name).unwrap() + name.len();
        churn[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    // Lifetimes are 100 to 300 ms, so each of the 5 clients cycles at least 3 times in 1 s.
    assert!(number("cycles=") >= 15, "{churn}");
    assert_eq!(number("failures="), 0, "{churn}");
    assert!(stdout.contains("expected=n/a lost=n/a"), "losses are not counted while churning: {stdout}");
    // The server saw clean closes (1000) from the churned connections, not dropped sockets.
    server.wait_for_log("closed by client (1000");
}

#[test]
fn churn_counts_connections_the_server_ends_as_failures() {
    // The server cuts off anyone sending more than 1 message a second; lifetimes of 5 to 15 s
    // mean no clean cycle can finish within the run, so every ending is the server's.
    let server = TestServer::start(&["--max-messages-per-sec", "1"]);
    let run =
        bench(&server.url("/"), "--clients 2 --senders 2 --rate 100 --duration 1s --warmup 0s --churn 10s");
    let stdout = &run.stdout;
    assert!(run.success, "{stdout}");
    assert!(stdout.contains("cycles=0 "), "{stdout}");
    assert!(!stdout.contains("failures=0"), "cut-off connections are failures: {stdout}");
}

#[test]
fn churn_needs_a_fixed_rate() {
    let run = bench("ws://127.0.0.1:1/", "--churn 1s");
    assert!(!run.success);
    assert!(run.stderr.contains("--churn needs --rate"), "{}", run.stderr);
}

#[test]
fn the_progress_line_says_warming_up_and_the_summary_uses_readable_units() {
    let server = TestServer::start(&[]);
    let run = bench(&server.url("/echo"), "--clients 2 --senders 1 --window 2 --duration 1s --warmup 1500ms");
    assert!(run.success, "{}", run.stderr);
    assert!(run.stderr.contains("] warming up "), "{}", run.stderr);
    assert!(!run.stderr.contains("0.0us"), "{}", run.stderr);
    let latency = run.stdout.lines().find(|l| l.starts_with("latency: ")).expect("a latency line");
    assert!([" ns", " us", " ms"].iter().any(|unit| latency.contains(unit)), "{latency}");
}

#[test]
fn the_latency_distribution_is_written_for_hdrhistograms_plotter_and_ours() {
    let server = TestServer::start(&[]);
    let dir = std::env::temp_dir().join(format!("wschat-hgrm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wschat.hgrm");
    let args = format!(
        "--clients 3 --senders 1 --rate 200 --duration 1s --warmup 0s --histogram {}",
        file.display()
    );
    let run = bench(&server.url("/echo"), &args);
    assert!(run.success, "{}", run.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
    assert!(text.contains("\n#[Mean    = ") && text.contains("\n#[Max     = "), "{text}");
    let last = text.lines().rfind(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
    assert!(last.split_whitespace().nth(1) == Some("1.000000000000"), "ends at the 100th percentile: {last}");
    let svg = dir.join("latency.svg");
    let plot = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/plot_latency.py"))
        .arg(&file)
        .arg("--out")
        .arg(&svg)
        .output()
        .expect("python3");
    assert!(plot.status.success(), "{}", String::from_utf8_lossy(&plot.stderr));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_is_not_fooled_by_the_rooms_history_of_the_first() {
    // The room's history replays the first run's messages, tokens and all, to every client of
    // the second: the bench must skip them (they would count as deliveries and as the senders'
    // acknowledgements, and stall the window).
    let server = TestServer::start(&["--max-messages-per-sec", "0"]);
    let args = "--clients 10 --senders 2 --window 4 --duration 1s --warmup 200ms";
    let first = bench(&server.url("/"), args);
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    let second = bench(&server.url("/"), args);
    assert!(second.success, "{}\n{}", second.stdout, second.stderr);
    let messages = second.stdout.lines().find(|l| l.starts_with("messages:")).unwrap_or_default().to_string();
    assert!(!messages.contains("sent=0 "), "the second run sent nothing: {messages}");
    assert!(messages.contains(" lost=0 "), "{messages}");
    let number = |name: &str| -> u64 {
        let at = messages.find(&format!("{name}=")).unwrap() + name.len() + 1;
        messages[at..].split_whitespace().next().unwrap().replace(',', "").parse().unwrap()
    };
    assert_eq!(number("deliveries"), number("expected"), "no replayed message counted: {messages}");
}

#[test]
fn source_addrs_spread_the_connections_over_several_local_addresses() {
    // Two connections per address: six clients need three addresses.
    let server = TestServer::start(&["--max-connections-per-ip", "2"]);
    let spread =
        bench(&server.url("/"), "--clients 6 --idle --duration 200ms --source-addrs 127.0.0.2-127.0.0.4");
    assert!(spread.stdout.contains("connect: ok=6 failed=0"), "{}\n{}", spread.stdout, spread.stderr);
    let one = bench(&server.url("/"), "--clients 6 --idle --duration 200ms");
    assert!(one.stdout.contains("connect: ok=2 failed=4"), "{}\n{}", one.stdout, one.stderr);
    assert!(one.stdout.contains("503"), "the refusal is named: {}", one.stdout);
}

#[test]
fn cpu_per_delivery_is_reported_for_the_bench_and_for_the_server_given_its_pid() {
    let server = TestServer::start(&[]);
    let pid = server.child.id();
    let args = format!("--clients 50 --senders 2 --duration 1s --warmup 100ms --server-pid {pid}");
    let (run, result) = bench_json(&server.url("/"), &args);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("cpu per delivery: "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        line.contains("bench=") && line.contains("% of its core") && !line.contains("server=-"),
        "{line}"
    );
    for field in ["bench_cpu_ns_per_delivery", "server_cpu_ns_per_delivery", "bench_core_use"] {
        assert!(result[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {result}");
    }

    let without = bench(&server.url("/"), "--clients 5 --duration 200ms --warmup 0s");
    assert!(without.stdout.contains("server=- (give --server-pid)"), "{}", without.stdout);
    let gone = bench(&server.url("/"), "--clients 5 --duration 200ms --server-pid 4294967295");
    assert!(!gone.success && gone.stderr.contains("--server-pid 4294967295"), "{}", gone.stderr);
}

#[test]
fn shootout_steps_up_the_clients_and_reports_the_most_under_the_limit() {
    let server = TestServer::start(&[]);
    let (run, result) = bench_json(&server.url("/"), "--shootout --clients 30 --step 10 --samples 8");
    let rows: Vec<&str> = run.stdout.lines().filter(|l| l.contains(" 8/8 ")).collect();
    assert_eq!(rows.len(), 3, "steps of 10, 20 and 30 clients, every sample complete: {}", run.stdout);
    assert!(
        run.stdout.contains("max_clients: 30 (every step up to --clients 30 stayed under it)"),
        "{}",
        run.stdout
    );
    assert_eq!((result["max_clients"].as_u64(), result["senders"].as_u64()), (Some(30), Some(4)), "{result}");
    let clients: Vec<u64> =
        result["steps"].as_array().unwrap().iter().map(|s| s["clients"].as_u64().unwrap()).collect();
    assert_eq!(clients, [10, 20, 30]);
    assert!(result["steps"][2]["p95_ms"].as_f64().unwrap() > 0.0);

    let small = bench(&server.url("/"), "--shootout --clients 30 --step 2");
    assert_eq!(small.code, Some(2), "the 4 senders must all be in the first step: {}", small.stderr);
    assert!(small.stderr.contains("--step at least --senders"), "{}", small.stderr);

    // A limit no broadcast can meet: the first step fails and nothing passes.
    let strict =
        bench(&server.url("/"), "--shootout --clients 30 --step 10 --samples 8 --shootout-limit 0ms");
    assert!(strict.stdout.contains("max_clients: 0 (the next step passed the limit)"), "{}", strict.stdout);
}

#[test]
fn processes_split_the_clients_and_the_merged_report_counts_every_delivery() {
    let server = TestServer::start(&[]);
    let pid = server.child.id();
    let args =
        format!("--clients 30 --senders 3 --processes 3 --duration 1s --warmup 200ms --server-pid {pid}");
    let (run, result) = bench_json(&server.url("/"), &args);
    assert!(run.stdout.contains("connect: ok=30 failed=0"), "{}", run.stdout);
    assert!(run.stderr.contains("3 processes"), "{}", run.stderr);
    let sent = result["sent"].as_u64().unwrap();
    // Every sender's messages reach the clients of every process, timed on one clock.
    assert!(sent > 0, "{result}");
    assert_eq!(result["expected"].as_u64(), Some(sent * 30), "{result}");
    assert_eq!(result["lost"].as_u64(), Some(0), "{result}");
    let p50 = result["latency_p50_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 1e6, "latencies across processes are real: {result}");
    assert!(result["server_cpu_ns_per_delivery"].as_f64().is_some_and(|v| v > 0.0), "{result}");

    let refused = bench("ws://127.0.0.1:1/", "--clients 4 --processes 2 --duration 1s");
    assert!(!refused.success, "no server: {}", refused.stdout);
    assert!(refused.stderr.contains("connection refused"), "each part says why: {}", refused.stderr);
}

#[test]
fn frames_larger_than_the_read_buffer_arrive_whole() {
    let server = TestServer::start(&["--max-message-size", "1MiB", "--max-outbound", "8MiB"]);
    let run =
        bench(&server.url("/"), "--clients 3 --senders 1 --window 2 --size 400000 --duration 1s --warmup 0s");
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let messages = run.stdout.lines().find(|l| l.starts_with("messages:")).unwrap_or_default();
    assert!(messages.contains("lost=0") && !messages.contains("sent=0"), "{}", run.stdout);
}

#[test]
fn a_server_that_closes_right_after_its_last_frame_is_seen_to_close() {
    use std::io::{Read, Write};
    // Answers every upgrade with 101, one text frame and the end of the stream, in one write,
    // so the data and the FIN arrive together.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).to_string();
            let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or_default();
            let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
            let mut reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            reply.extend_from_slice(&[0x81, 5]);
            reply.extend_from_slice(b"hello");
            let _ = stream.write_all(&reply);
        }
    });
    // Every connection ends as it opens: none may be reported as held open.
    let run = bench(&format!("ws://{addr}/"), "--clients 10 --idle --duration 300ms --warmup 0s");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains("connect: ok=10 "), "{all}");
    assert!(all.contains("connection closed by the server"), "{all}");
}

#[test]
fn several_server_pids_are_reported_each_and_together() {
    let (server, other) = (TestServer::start(&[]), TestServer::start(&[]));
    let pids = format!("{},{}", server.child.id(), other.child.id());
    let args = format!("--clients 50 --senders 2 --duration 1s --warmup 100ms --server-pid {pids}");
    let (run, result) = bench_json(&server.url("/"), &args);
    let each: Vec<f64> = result["server_cpu_ns_per_delivery_each"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(each.len(), 2, "{result}");
    let total = result["server_cpu_ns_per_delivery"].as_f64().unwrap();
    assert!((each[0] + each[1] - total).abs() < 1e-6 * total.max(1.0), "the sum of each: {result}");
    assert!(each[0] > 0.0, "the loaded server worked: {result}");
    assert!(run.stdout.contains("(each: "), "{}", run.stdout);
}

#[test]
fn a_stopped_bench_takes_its_processes_with_it() {
    let server = TestServer::start(&[]);
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", server.child.id())).unwrap().count();
    let idle = fds();
    let mut parent = Command::new(env!("CARGO_BIN_EXE_wschat-bench"))
        .arg(server.url("/"))
        .args(["--clients", "20", "--processes", "2", "--idle", "--duration", "60s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    while fds() < idle + 20 {
        assert!(std::time::Instant::now() < deadline, "the clients never connected");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    parent.kill().unwrap(); // SIGKILL: the parent cannot tell its parts anything
    parent.wait().unwrap();
    while fds() > idle {
        assert!(std::time::Instant::now() < deadline, "the parts kept their connections open");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_echo_endpoint_is_measured_as_echo_not_as_lost_broadcasts() {
    let server = TestServer::start(&[]);
    let (run, result) =
        bench_json(&server.url("/echo"), "--clients 10 --senders 2 --window 4 --duration 1s --warmup 200ms");
    assert!(run.stdout.contains("echo: each message is expected once, back at its sender"), "{}", run.stdout);
    let sent = result["sent"].as_u64().unwrap();
    assert!(sent > 0, "{result}");
    assert_eq!(result["expected"].as_u64(), Some(sent), "one delivery a message: {result}");
    assert_eq!(result["lost"].as_u64(), Some(0), "{result}");
}

#[test]
fn a_result_file_that_cannot_be_written_is_refused_before_the_run() {
    // No server at all: the flags are judged (a usage error, 2) before anything connects (a
    // run that could not connect exits 1).
    let run = bench("ws://127.0.0.1:9/", "--duration 30s --json /nonexistent-dir/result.json");
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--json /nonexistent-dir/result.json: no directory"), "{}", run.stderr);
}
