//! A real `redis-server` for the cluster tests, on a free loopback port, without persistence
//! (so a restart loses everything, as the tests want), killed when dropped.
//!
//! Where `redis-server` is missing, [`RedisServer::start`] returns None and the test says it
//! was skipped; under `CI=true` a missing `redis-server` fails the test instead, so CI can
//! never pass by skipping.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestServer, WAIT};

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

/// Whether `redis-server` can be run; where it cannot, says that `test` is skipped (and fails
/// under `CI=true`).
pub fn installed(test: &str) -> bool {
    if Command::new("redis-server").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "redis-server is not installed, and under CI this test must run, not skip"
    );
    // Straight to stderr: the test harness captures `eprintln!` of a passing test, and a skip
    // must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: redis-server is not installed (apt install redis-server)"
    );
    false
}

/// A wschat process in the cluster (`--redis` and `flags`), once it has said it is linked.
pub fn member_server(redis: &RedisServer, flags: &[&str]) -> TestServer {
    let url = redis.url();
    let mut all = vec!["--redis", &url];
    all.extend(flags);
    let server = TestServer::start(&all);
    server.wait_for_log("connected to Redis");
    server
}

impl RedisServer {
    /// Starts Redis on a free port; None (after saying so) where it is not installed.
    pub fn start(test: &str) -> Option<Self> {
        if !installed(test) {
            return None;
        }
        // The port is free when asked for, but another process may take it before Redis binds
        // it: Redis then exits, and another port is tried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if let Some(server) = Self::try_start_on(port) {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Starts Redis on `port` and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port).unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    /// Starts Redis on `port` and waits until it answers; None if it exits first (the port
    /// was taken).
    fn try_start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut server = Self { child, port };
        let deadline = Instant::now() + WAIT;
        while server.command(&["PING"]).as_deref() != Some("+PONG") {
            if server.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops Redis at once (SIGKILL: no chance to save anything).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes Redis (SIGSTOP): connected, reading nothing, answering nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen Redis run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill").args([which, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {which}");
    }

    /// Runs one command; its first reply line, or None if Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(WAIT)).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
