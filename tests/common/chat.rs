//! The chat under test, deployed either of the two ways it runs in production: one process, or
//! two processes joined by a `redis-server` of their own (`--redis`). The chat, history,
//! sign-in and hostile-client suites run each scenario both ways through [`both_modes!`].
//!
//! A client connects "to the chat" and lands on the processes in turn (the first on process 0,
//! the second on process 1, the third on process 0 ...), so that in a cluster the members of a
//! room really sit on different processes and everything between them crosses Redis. A test
//! that needs a client on a given process names it with [`Chat::process`].

use std::sync::atomic::{AtomicUsize, Ordering};

use super::redis::RedisServer;
use super::{json_client, recv_line, Client, TestServer};

/// How many `wschat-server` processes a cluster fixture runs.
const CLUSTER_PROCESSES: usize = 2;

/// How the chat under test is deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One `wschat-server`, alone.
    OneProcess,
    /// Two `wschat-server` processes sharing one `redis-server`.
    Cluster,
}

/// A running chat: its processes (and in a cluster, their Redis), all killed when dropped.
pub struct Chat {
    // Before `_redis`: fields drop in order, so the processes die before their Redis does and
    // none of them spends its last moments (and log lines) on a lost link.
    processes: Vec<TestServer>,
    /// Kept for as long as the processes use it (None for one process).
    _redis: Option<RedisServer>,
    /// Counts the clients connected so far; the next one goes to process `turn % processes`.
    turn: AtomicUsize,
}

impl Chat {
    /// Starts the chat with `flags` on every process. A cluster gets a Redis of its own (so
    /// tests run in parallel without sharing rooms or nicks) and is returned only once every
    /// process is linked to it: a process that is not yet linked chats on its own, and a
    /// client connected to it then would not be in the same chat as the others.
    #[track_caller]
    pub fn start(mode: Mode, flags: &[&str]) -> Self {
        let (processes, redis) = match mode {
            Mode::OneProcess => (vec![TestServer::start(flags)], None),
            Mode::Cluster => {
                let redis = RedisServer::start("a cluster fixture")
                    .expect("redis-server is installed (both_modes! checks before starting a cluster)");
                let url = redis.url();
                let mut flags = flags.to_vec();
                flags.extend(["--redis", url.as_str()]);
                let processes: Vec<TestServer> =
                    (0..CLUSTER_PROCESSES).map(|_| TestServer::start(&flags)).collect();
                for process in &processes {
                    process.wait_for_log("connected to Redis at");
                }
                (processes, Some(redis))
            }
        };
        Self { processes, _redis: redis, turn: AtomicUsize::new(0) }
    }

    /// Every process of the chat.
    pub fn processes(&self) -> &[TestServer] {
        &self.processes
    }

    /// Process `i`, counting round: in a cluster `process(0)` and `process(1)` differ; alone,
    /// every index is the one process.
    pub fn process(&self, i: usize) -> &TestServer {
        &self.processes[i % self.processes.len()]
    }

    /// The process the next client goes to (and its turn taken): for a connection a test makes
    /// by hand (raw frames, an HTTP request) that should land where the next client would.
    pub fn next_process(&self) -> &TestServer {
        self.process(self.turn.fetch_add(1, Ordering::Relaxed))
    }

    /// Connects a WebSocket client to `path` on the next process.
    #[track_caller]
    pub fn connect(&self, path: &str) -> Client {
        self.next_process().connect(path)
    }

    /// Connects a chat client on the next process and consumes its welcome notice.
    #[track_caller]
    pub fn chat_client(&self, nick: &str) -> Client {
        self.next_process().chat_client(nick)
    }

    /// A JSON-mode client at `query` (e.g. `?nick=bob&room=dev`) on the next process.
    #[track_caller]
    pub fn json_client(&self, query: &str) -> Client {
        json_client(self.next_process(), query)
    }

    /// Connects one chat client per nick (on the processes in turn) and returns them once every
    /// one of them has seen the last one join, so a test starts from a quiet lobby.
    ///
    /// Each waits for its own join before the next connects: that line reaches a client through
    /// the room, so once it is seen the client hears the room (in a cluster, its process is
    /// subscribed) and cannot miss the joins that follow.
    #[track_caller]
    pub fn chat_room(&self, nicks: &[&str]) -> Vec<Client> {
        let mut clients = Vec::new();
        for nick in nicks {
            let mut ws = self.chat_client(nick);
            recv_line(&mut ws, &format!("*** {nick} joined lobby"));
            clients.push(ws);
        }
        let last_join = format!("*** {} joined lobby", nicks[nicks.len() - 1]);
        let earlier = clients.len() - 1;
        for ws in &mut clients[..earlier] {
            recv_line(ws, &last_join);
        }
        clients
    }

    /// Every process's log so far, one process after the other.
    pub fn log(&self) -> Vec<String> {
        self.processes.iter().flat_map(TestServer::log).collect()
    }

    /// Waits until a log line of any process contains `needle`; returns it.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line containing {needle:?}; logs: {:#?}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Sends a signal (e.g. "HUP") to every process, as an operator does to the whole chat.
    pub fn signal(&self, name: &str) {
        for process in &self.processes {
            process.signal(name);
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        // A failed scenario shows what each process logged (the test harness prints a failing
        // test's output); in a cluster the cause is often on the other process.
        if std::thread::panicking() {
            for (i, process) in self.processes.iter().enumerate() {
                eprintln!("--- log of process {i} ({}, pid {}) ---", process.addr, process.child.id());
                for line in process.log() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Runs the scenario `fn NAME` against one process and against a cluster, as the tests
/// `NAME::one_process` and `NAME::cluster` (so `cargo test NAME` runs both, and
/// `cargo test ::cluster` every cluster run):
///
/// - `both_modes!(NAME);` for `fn NAME(chat: &Chat)`, the chat started without flags;
/// - `both_modes!(NAME, ["--flag", "value"]);` the same, with these flags on every process;
/// - `both_modes!(NAME(mode));` for `fn NAME(mode: Mode)`, which starts the chat itself with
///   `Chat::start(mode, flags)`, when its flags need something made first (a key file).
///
/// Where `redis-server` is missing, the cluster test says it was skipped (under `CI=true` it
/// fails; see `common::redis`).
#[allow(unused_macros)] // by the test files that include `common` without using it
macro_rules! both_modes {
    ($name:ident) => {
        $crate::common::both_modes!($name, []);
    };
    ($name:ident, [$($flag:expr),* $(,)?]) => {
        $crate::common::both_modes!(@tests $name, |mode| {
            super::$name(&$crate::common::Chat::start(mode, &[$($flag),*]))
        });
    };
    ($name:ident(mode)) => {
        $crate::common::both_modes!(@tests $name, super::$name);
    };
    (@tests $name:ident, $run:expr) => {
        mod $name {
            #[test]
            fn one_process() {
                ($run)($crate::common::Mode::OneProcess)
            }

            #[test]
            fn cluster() {
                if $crate::common::redis::installed(concat!(module_path!(), "::cluster")) {
                    ($run)($crate::common::Mode::Cluster)
                }
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_modes;
