//! `wschat-client`: a terminal chat client for wschat (or any server speaking the same text
//! lines).
//!
//! Two threads. The input thread reads lines, from a line editor on a terminal
//! ([`input::interactive`]) or plainly from a pipe ([`input::scripted`]), and queues them as
//! [`Command`]s. The calling thread owns the connection: it makes it ([`connect`]), runs it
//! ([`session`]), prints what arrives through an [`Output`], and, with `--reconnect`,
//! connects again with capped exponential backoff. Ctrl-C is a command too (the line editor
//! reads it as a key), which the calling thread answers at once whether it is connecting,
//! connected or waiting to reconnect. [`run`] returns the process exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | closed normally (code 1000, after `/quit`, Ctrl-D, Ctrl-C or the end of piped input) |
//! | 1 | could not connect, the server refused the handshake, or the connection ended abnormally (another close code, or dropped without a close) |
//! | 2 | bad command line (clap's errors, an address that is not a WebSocket one, a `--binary` file that cannot be read) |
//! | 130 | Ctrl-C before a connection was made, while connecting or waiting to reconnect (from a pipe, SIGINT ends the process, which the shell reports as 130) |

pub mod connect;
pub mod display;
pub mod input;
pub mod resume;
pub mod session;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::rng::Rng;
use crate::server_url::ServerUrl;
use crate::units::parse_duration;
use connect::ConnectError;
use display::{Output, PlainOutput};
use resume::Resume;
use session::{Command, Ending, Inbox, Wakeup};

// The one rule every wschat binary follows: 0 ok, 1 a failure while running, 2 a bad command
// line (and 130, the shell's code for SIGINT, for Ctrl-C before a connection was made).
pub const EXIT_OK: i32 = 0;
/// Could not connect, the server refused the handshake, or the connection ended abnormally.
pub const EXIT_FAILURE: i32 = 1;
/// A bad command line: clap's own errors, and a `--binary` or `--ca-file` file that cannot be read.
pub const EXIT_USAGE: i32 = 2;
/// Ctrl-C before a connection was made: the shell's code for SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Terminal chat client for wschat.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wschat-client",
    version,
    about = "Terminal chat client for wschat: a line editor on a terminal, scriptable through a pipe",
    long_about = None,
    after_help = concat!(
        crate::units_help!(),
        "\n\nExit status: 0 after a normal close (1000), 1 when it could not connect, the handshake \
         was refused or the connection ended otherwise, 2 for a bad command line (an address \
         included), 130 for Ctrl-C before a connection was made (while connecting or waiting to \
         reconnect)."
    )
)]
pub struct ClientConfig {
    /// Server: ws://127.0.0.1:9001/, wss://chat.example.com/, 127.0.0.1:9001, localhost,
    /// 127.0.0.1 (an address without a scheme means ws://, and port 9001, the server's
    /// default, if it names none).
    #[arg(value_parser = ServerUrl::parse)]
    pub url: ServerUrl,

    /// Nick to ask for (sent as ?nick=; the server picks guest-N if it is taken or invalid).
    #[arg(long)]
    pub nick: Option<String>,

    /// Send this file as one binary message once connected.
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,

    /// Sign in with the token (JWT) in FILE, or `-` for the first line of standard input. The
    /// nick is then the token's. When the session expires the file is read again and a new
    /// token in it sent (`/token`); `/token JWT` typed by hand works too, and is remembered
    /// for reconnections.
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,

    /// On a failed connection or an abnormal close, connect again with exponential backoff.
    #[arg(long)]
    pub reconnect: bool,

    /// Longest wait between reconnection attempts.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub reconnect_max_delay: Duration,

    /// Time allowed to connect and complete the handshakes (TLS and WebSocket), for each of the
    /// server's addresses; Ctrl-C ends the wait at once (exit status 130).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Time allowed for the server to acknowledge piped input and to answer our close.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub close_timeout: Duration,

    /// For wss://: also trust the CA certificates in this PEM file (a private CA, a
    /// self-signed server certificate). The public web roots are always trusted.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    /// The URL to connect to first: `ws://` and the server's default port 9001 added if no
    /// scheme was given (`127.0.0.1` is `ws://127.0.0.1:9001`), and the nick as a query.
    pub fn request_url(&self) -> String {
        Resume::new(self.nick.clone()).url(self.url.as_str())
    }
}

/// Runs the client with the process's stdin and stdout; returns the exit status.
pub fn run(config: ClientConfig) -> i32 {
    let binary = match &config.binary {
        Some(path) => match std::fs::read(path) {
            Ok(data) => Some(data),
            Err(e) => {
                eprintln!("wschat-client: cannot read {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let token = match config.token.as_deref().map(read_token).transpose() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("wschat-client: {e}");
            return EXIT_USAGE;
        }
    };
    let tls = match crate::tls::client::config(config.ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("wschat-client: {e}");
            return EXIT_USAGE;
        }
    };
    let colour = std::env::var_os("NO_COLOR").is_none();
    let (sender, receiver) = mpsc::channel();
    let mut commands = Inbox::new(receiver);
    if let Some(data) = binary {
        let _ = sender.send(Command::Binary(data));
    }
    let wakeup = Wakeup::default();
    if std::io::stdin().is_terminal() {
        let Some(input) =
            input::interactive(sender, wakeup.clone(), colour && std::io::stdout().is_terminal())
        else {
            return EXIT_FAILURE;
        };
        let status = connect_loop(&config, token, &tls, &mut commands, &wakeup, input.output.as_ref());
        input.finish(status)
    } else {
        input::scripted(sender, wakeup.clone());
        let output = PlainOutput { colour: colour && std::io::stdout().is_terminal() };
        connect_loop(&config, token, &tls, &mut commands, &wakeup, &output)
    }
}

/// Connects, runs sessions, reconnects if asked to; returns the exit status.
fn connect_loop(
    config: &ClientConfig,
    token: Option<String>,
    tls: &Arc<rustls::ClientConfig>,
    commands: &mut Inbox,
    wakeup: &Wakeup,
    out: &dyn Output,
) -> i32 {
    let mut resume = Resume::new(config.nick.clone());
    resume.token = token;
    resume.token_file = config.token.clone().filter(|path| path.as_os_str() != "-");
    let mut backoff = Backoff::new(config.reconnect_max_delay);
    loop {
        // Each connection after the first resumes where the last one was (room and last id).
        let url = resume.url(config.url.as_str());
        out.status(&format!("connecting to {}…", resume::without_token(&url)));
        let status = match connect::connect(&config.url, &url, config.connect_timeout, tls, commands, wakeup)
        {
            Ok(session) => {
                backoff.reset();
                out.status(&format!("connected to {} ({})", resume::without_token(&url), session.peer));
                match session.run(commands, wakeup, out, config.close_timeout, &mut resume) {
                    Ending::Normal { reason } => {
                        out.status(&format!("connection closed: 1000{}", describe(&reason)));
                        return EXIT_OK;
                    }
                    Ending::Closed { code, reason } => {
                        out.status(&format!("connection closed by the server: {code}{}", describe(&reason)));
                        // Kicked or banned (4000), or a session that cannot go on: coming back
                        // would only repeat it.
                        let final_close = code == crate::server::hub::KICKED
                            || (code == 1008
                                && (reason.starts_with("token expired") || reason.starts_with("nick ")));
                        if final_close {
                            return EXIT_FAILURE;
                        }
                        EXIT_FAILURE
                    }
                    Ending::Lost(why) => {
                        out.status(&why);
                        EXIT_FAILURE
                    }
                }
            }
            Err(ConnectError::Interrupted) => return EXIT_INTERRUPTED,
            Err(ConnectError::Permanent(why)) => {
                // A bad URL or a 4xx refusal: retrying would only repeat it.
                out.status(&format!("wschat-client: {why}"));
                return EXIT_FAILURE;
            }
            Err(ConnectError::Transient(why)) => {
                out.status(&format!("wschat-client: {why}"));
                EXIT_FAILURE
            }
        };
        if !config.reconnect {
            return status;
        }
        let delay = backoff.next_delay();
        out.status(&format!("reconnecting in {:.1}s (attempt {})", delay.as_secs_f64(), backoff.attempts));
        if let Some(status) = wait_while_disconnected(commands, delay, out) {
            return status;
        }
    }
}

/// The token in `path` (`-`: the first line of standard input), trimmed.
fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = if path.as_os_str() == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        line
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
    };
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(format!("no token in {}", path.display()));
    }
    Ok(token)
}

fn describe(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// Waits out a reconnection delay. Lines typed meanwhile cannot be sent and are reported
/// dropped. The exit status if the user finished: Ctrl-D or the end of input (0), Ctrl-C (130).
fn wait_while_disconnected(commands: &mut Inbox, delay: Duration, out: &dyn Output) -> Option<i32> {
    let until = Instant::now() + delay;
    loop {
        match commands.next_within(until.saturating_duration_since(Instant::now())) {
            Ok(Command::Interrupt) => return Some(EXIT_INTERRUPTED),
            Ok(Command::Finish { .. }) | Err(RecvTimeoutError::Disconnected) => return Some(EXIT_OK),
            Ok(Command::Line(line)) => out.status(&format!("not connected; not sent: {line}")),
            Ok(Command::Binary(data)) => {
                out.status(&format!("not connected; not sent: {} bytes", data.len()))
            }
            Err(RecvTimeoutError::Timeout) => return None,
        }
    }
}

/// Capped exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to the cap, each ±20%, so a
/// crowd of clients cut off together does not come back in one wave.
struct Backoff {
    cap: Duration,
    attempts: u32,
    rng: Rng,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);

    fn new(cap: Duration) -> Self {
        Self { cap, attempts: 0, rng: Rng::from_time() }
    }

    fn reset(&mut self) {
        self.attempts = 0;
    }

    fn next_delay(&mut self) -> Duration {
        let base = Self::FIRST.saturating_mul(1 << self.attempts.min(16)).min(self.cap);
        self.attempts += 1;
        let jitter = 0.8 + self.rng.below(401) as f64 / 1000.0;
        base.mul_f64(jitter).min(self.cap)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, nick: Option<&str>) -> ClientConfig {
        let mut args = vec!["wschat-client", url];
        if let Some(nick) = nick {
            args.extend(["--nick", nick]);
        }
        ClientConfig::parse_from(args)
    }

    #[test]
    fn request_url_adds_scheme_path_and_encoded_nick() {
        assert_eq!(config("127.0.0.1:9001", None).request_url(), "ws://127.0.0.1:9001/");
        assert_eq!(config("ws://h:1", Some("zoë b")).request_url(), "ws://h:1/?nick=zo%C3%AB%20b");
        assert_eq!(config("ws://h:1/?x=1", Some("a")).request_url(), "ws://h:1/?x=1&nick=a");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, delay) in delays.iter().enumerate() {
            let base = Duration::from_millis(500 * (1 << i.min(3))).min(Duration::from_secs(4));
            assert!(*delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2), "{i}: {delay:?}");
            assert!(*delay <= Duration::from_secs(4));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(600));
    }
}
