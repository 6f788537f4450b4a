//! The terminal client as a person sees it: the real `wschat-client` in a real terminal (a tmux
//! pane), typed into with `send-keys` and read back with `capture-pane`, which gives the screen
//! as drawn, after every cursor movement and erase. Needs `tmux`; `.ci/run` installs it, and
//! without it these tests fail under `CI` and are skipped (with a message) elsewhere.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::Message;

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// One tmux server of our own (its own socket), so tests never touch a user's sessions.
struct Pane {
    socket: String,
}

impl Pane {
    /// Runs `command` in a `width`-column pane; `None` if tmux is not installed (outside CI).
    fn start(command: &str, width: u16) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "tmux is required in CI (.ci/run installs it)");
            eprintln!("skipped: tmux is not installed");
            return None;
        }
        let socket = format!("wschat-test-{}-{}", std::process::id(), rand_suffix());
        // The command's exit status is printed, then the pane stays open to be read.
        let shell = format!("{command}; echo EXIT=$?; sleep 60");
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                "30",
            ])
            .arg(shell)
            .env("NO_COLOR", "1")
            .status()
            .expect("start tmux");
        assert!(status.success(), "tmux new-session failed");
        Some(Self { socket })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
        self.tmux(&["send-keys", "Enter"]);
    }

    /// The screen's rows, trailing blank ones dropped.
    fn screen(&self) -> Vec<String> {
        let text = self.tmux(&["capture-pane", "-p", "-J"]);
        let mut rows: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while rows.last().is_some_and(|r| r.is_empty()) {
            rows.pop();
        }
        rows
    }

    /// Waits until `ready` holds for the screen, and returns it.
    fn wait_for(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        // The server leaves its socket behind when killed: remove it too, so tests leave
        // nothing in the temporary directory.
        let socket = self.tmux(&["display-message", "-p", "#{socket_path}"]);
        self.tmux(&["kill-server"]);
        if !socket.trim().is_empty() {
            let _ = std::fs::remove_file(socket.trim());
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

fn client_command(server: &TestServer, nick: &str) -> String {
    format!("{} {} --nick {nick}", env!("CARGO_BIN_EXE_wschat-client"), server.url("/"))
}

/// What `nick` said, in the order `watcher` received it, until `n` lines came or the deadline
/// passed.
fn said_by(watcher: &mut Client, nick: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let prefix = format!("{nick}: ");
    let mut said = Vec::new();
    while said.len() < n {
        match recv_by(watcher, deadline) {
            Some(Message::Text(text)) => said.extend(text.strip_prefix(&prefix).map(str::to_string)),
            Some(_) => {}
            None => break,
        }
    }
    said
}

/// A server, a watcher in its lobby, and `nick`'s client in a pane, welcomed; `None` without
/// tmux.
fn watched_client(nick: &str) -> Option<(TestServer, Client, Pane)> {
    let server = TestServer::start(&[]);
    let watcher = server.chat_client("watcher");
    let pane = Pane::start(&client_command(&server, nick), 80)?;
    pane.wait_for("the welcome", |s| count(s, &format!("welcome, you are {nick}")) == 1);
    Some((server, watcher, pane))
}

fn count(screen: &[String], needle: &str) -> usize {
    screen.iter().filter(|row| row.contains(needle)).count()
}

#[test]
fn a_line_you_send_shows_once_even_when_it_wraps() {
    let server = TestServer::start(&[]);
    let Some(pane) = Pane::start(&client_command(&server, "alice"), 60) else { return };
    pane.wait_for("the welcome", |s| count(s, "welcome, you are alice") == 1);

    pane.type_line("hello there");
    let long = "a long line that wraps: ".to_string() + &"word ".repeat(20) + "end";
    pane.type_line(&long);
    pane.type_line("/who");
    let screen = pane.wait_for("the answer to /who", |s| count(s, "*** in lobby (1): alice") == 1);

    assert_eq!(count(&screen, "hello there"), 1, "the line shows twice:\n{}", screen.join("\n"));
    assert_eq!(count(&screen, "alice: hello there"), 1, "the server's copy is the one shown");
    // `-J` joins wrapped rows, so a long line is one row here however the pane wrapped it.
    assert_eq!(count(&screen, "wraps: word"), 1, "the long line shows twice:\n{}", screen.join("\n"));
    assert_eq!(count(&screen, "/who"), 0, "the typed command stays on screen:\n{}", screen.join("\n"));
    assert_eq!(screen.last().map(String::as_str), Some(">"), "the prompt waits on the last row");
}

#[test]
fn no_prompt_is_left_behind_when_the_connection_closes() {
    let mut server = TestServer::start(&[]);
    let Some(pane) = Pane::start(&client_command(&server, "bob"), 80) else { return };
    pane.wait_for("the welcome", |s| count(s, "welcome, you are bob") == 1);

    server.signal("TERM");
    let screen = pane.wait_for("the exit", |s| s.iter().any(|r| r.starts_with("EXIT=")));
    server.wait_exit();

    let closed = screen.iter().position(|r| r.contains("connection closed by the server: 1001"));
    let exit = screen.iter().position(|r| r == "EXIT=1");
    assert!(
        closed.is_some() && exit.is_some(),
        "the close and exit status 1 are shown:\n{}",
        screen.join("\n")
    );
    assert!(
        screen.iter().all(|r| r != ">" && !r.starts_with("> ")),
        "a prompt was left behind:\n{}",
        screen.join("\n")
    );
    assert_eq!(exit.unwrap(), closed.unwrap() + 1, "the exit status follows the close directly");
}

#[test]
fn lines_typed_ahead_are_all_sent_in_order() {
    let Some((_server, mut watcher, pane)) = watched_client("typer") else { return };

    // One send-keys: the three lines reach the terminal together, as when typing ahead of a
    // slow answer.
    pane.tmux(&["send-keys", "line one", "Enter", "line two", "Enter", "line three", "Enter"]);
    assert_eq!(said_by(&mut watcher, "typer", 3), ["line one", "line two", "line three"]);
}

#[test]
fn a_pasted_block_of_lines_is_sent_line_by_line_in_order() {
    let Some((_server, mut watcher, pane)) = watched_client("paster") else { return };

    let lines: Vec<String> = (1..=20).map(|i| format!("pasted line {i}")).collect();
    pane.tmux(&["set-buffer", "--", &(lines.join("\n") + "\n")]);
    // `-p`: bracketed, as a terminal pastes when the program asks for it.
    pane.tmux(&["paste-buffer", "-p"]);
    assert_eq!(said_by(&mut watcher, "paster", 20), lines);
    let screen = pane.wait_for("the last line's echo", |s| count(s, "paster: pasted line 20") == 1);
    assert_eq!(
        screen.last().map(String::as_str),
        Some(">"),
        "the prompt waits, empty:\n{}",
        screen.join("\n")
    );
}

/// Presses Ctrl-C in `pane` and returns the exit status the pane's shell reports, and how long
/// it took to come.
fn ctrl_c_and_exit_status(pane: &Pane) -> (String, Duration) {
    let pressed = Instant::now();
    pane.tmux(&["send-keys", "C-c"]);
    let screen = pane.wait_for("the exit", |s| s.iter().any(|r| r.starts_with("EXIT=")));
    let took = pressed.elapsed();
    (screen.into_iter().find(|r| r.starts_with("EXIT=")).unwrap(), took)
}

#[test]
fn ctrl_c_while_connecting_to_a_server_that_never_answers_ends_at_once_with_130() {
    // TCP connects (the kernel accepts into the backlog), the handshake is never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let command = format!("{} {url} --connect-timeout 60s", env!("CARGO_BIN_EXE_wschat-client"));
    let Some(pane) = Pane::start(&command, 80) else { return };
    pane.wait_for("the connecting line", |s| count(s, &format!("connecting to {url}…")) == 1);

    let (status, took) = ctrl_c_and_exit_status(&pane);
    assert_eq!(status, "EXIT=130", "{}", pane.screen().join("\n"));
    assert!(took < Duration::from_secs(5), "Ctrl-C took {took:?}");
}

#[test]
fn ctrl_c_while_waiting_to_reconnect_ends_with_130() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", closed.local_addr().unwrap());
    drop(closed); // nothing listens there now
    let command = format!("{} {url} --reconnect", env!("CARGO_BIN_EXE_wschat-client"));
    let Some(pane) = Pane::start(&command, 80) else { return };
    pane.wait_for("the back-off", |s| count(s, "reconnecting in ") == 1);

    let (status, _) = ctrl_c_and_exit_status(&pane);
    assert_eq!(status, "EXIT=130", "{}", pane.screen().join("\n"));
}

#[test]
fn ctrl_c_while_connected_closes_normally() {
    let server = TestServer::start(&[]);
    let Some(pane) = Pane::start(&client_command(&server, "carol"), 80) else { return };
    pane.wait_for("the welcome", |s| count(s, "welcome, you are carol") == 1);

    let (status, _) = ctrl_c_and_exit_status(&pane);
    assert_eq!(status, "EXIT=0", "{}", pane.screen().join("\n"));
    assert_eq!(count(&pane.screen(), "connection closed: 1000 (bye)"), 1, "{}", pane.screen().join("\n"));
}
