//! How the terminal client shows what arrives: each server line is read back into its form
//! ([`ServerLine`], the type the server builds it from) and, on a colour terminal, styled so notices and private messages stand
//! apart from chat. Pure functions; the [`Output`] sinks are the only part that prints.

use std::io::Write;
use std::sync::Mutex;

use rustyline::ExternalPrinter;

use crate::chat::ServerLine;

/// The kinds of server line the protocol defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `NICK: TEXT`
    Chat,
    /// `* NICK ACTION`
    Action,
    /// `[PM from NICK] TEXT` or `[PM to NICK] TEXT`
    Private,
    /// `[FROM] TEXT`: an application's message (the server's HTTP API)
    Api,
    /// `*** error: TEXT`
    Error,
    /// Any other `*** TEXT` notice.
    Notice,
    /// Something this client says itself (connection state, binary messages).
    Status,
    /// A message that names the user (`@NICK`): set apart from every other line.
    Mention,
}

/// Classifies one line of server text by the forms the server builds it from
/// ([`ServerLine`]).
pub fn classify(line: &str) -> LineKind {
    match ServerLine::parse(line) {
        ServerLine::Error(_) => LineKind::Error,
        ServerLine::BinaryFrom { .. } => LineKind::Status,
        ServerLine::Notice(_) => LineKind::Notice,
        ServerLine::Action { .. } => LineKind::Action,
        ServerLine::PrivateFrom { .. } | ServerLine::PrivateTo { .. } | ServerLine::PrivateFromApi { .. } => {
            LineKind::Private
        }
        ServerLine::Api { .. } => LineKind::Api,
        ServerLine::Chat { .. } | ServerLine::Other(_) => LineKind::Chat,
    }
}

/// `line` ready to print: unchanged without colour; with colour, wrapped in ANSI SGR codes
/// (the nick of a chat line in bold, the rest by kind).
pub fn render(line: &str, kind: LineKind, colour: bool) -> String {
    let line = strip_controls(line);
    if !colour {
        return line;
    }
    const RESET: &str = "\x1b[0m";
    match kind {
        LineKind::Chat => match ServerLine::parse(&line) {
            ServerLine::Chat { nick, text } => format!("\x1b[1m{nick}:{RESET} {text}"),
            _ => line,
        },
        LineKind::Action => format!("\x1b[36m{line}{RESET}"),
        LineKind::Private => format!("\x1b[35m{line}{RESET}"),
        LineKind::Api => format!("\x1b[32m{line}{RESET}"),
        LineKind::Error => format!("\x1b[31m{line}{RESET}"),
        LineKind::Notice => format!("\x1b[33m{line}{RESET}"),
        LineKind::Status => format!("\x1b[2m{line}{RESET}"),
        LineKind::Mention => format!("\x1b[1;7m{line}{RESET}"),
    }
}

/// Other users choose what we print: drop control characters (escape sequences above all, which
/// could rewrite the terminal) except the newlines of multi-line notices and tabs.
fn strip_controls(line: &str) -> String {
    line.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

/// Where the client's output goes.
pub trait Output: Send + Sync {
    /// A line from the server, shown as its form says.
    fn message(&self, line: &str) {
        self.shown(line, classify(line));
    }
    /// A line from the server, shown as `kind` (a mention of the user, a line with its id
    /// before it).
    fn shown(&self, line: &str, kind: LineKind);
    /// A binary message from the server, shown as `[binary, N bytes from NICK]`.
    fn binary(&self, len: usize, from: Option<&str>);
    /// Something the client itself reports (connected, closed, reconnecting).
    fn status(&self, line: &str);
}

fn binary_line(len: usize, from: Option<&str>) -> String {
    match from {
        Some(nick) => format!("[binary, {len} bytes from {nick}]"),
        None => format!("[binary, {len} bytes]"),
    }
}

/// Piped or redirected output: server lines on stdout, the client's own reports on stderr, so
/// a script's stdout holds exactly what the server said.
pub struct PlainOutput {
    pub colour: bool,
}

impl Output for PlainOutput {
    fn shown(&self, line: &str, kind: LineKind) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", render(line, kind, self.colour));
    }

    fn binary(&self, len: usize, from: Option<&str>) {
        let line = render(&binary_line(len, from), LineKind::Status, self.colour);
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    fn status(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{}", render(line, LineKind::Status, self.colour));
    }
}

/// Interactive output: printed above the line being edited, which rustyline then redraws.
pub struct EditorOutput<P: ExternalPrinter + Send> {
    pub printer: Mutex<P>,
    pub colour: bool,
}

impl<P: ExternalPrinter + Send> EditorOutput<P> {
    fn print(&self, mut text: String) {
        // While a line is being edited rustyline adds the newline itself if missing; once the
        // editor has stopped it prints the text as is.
        text.push('\n');
        if let Ok(mut printer) = self.printer.lock() {
            let _ = printer.print(text);
        }
    }
}

impl<P: ExternalPrinter + Send> Output for EditorOutput<P> {
    fn shown(&self, line: &str, kind: LineKind) {
        self.print(render(line, kind, self.colour));
    }

    fn binary(&self, len: usize, from: Option<&str>) {
        self.print(render(&binary_line(len, from), LineKind::Status, self.colour));
    }

    fn status(&self, line: &str) {
        self.print(render(line, LineKind::Status, self.colour));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_protocol_form() {
        assert_eq!(classify("ann: hello"), LineKind::Chat);
        assert_eq!(classify("* ann waves"), LineKind::Action);
        assert_eq!(classify("[PM from ann] hi"), LineKind::Private);
        assert_eq!(classify("[PM to bob] hi"), LineKind::Private);
        assert_eq!(classify("*** ann joined lobby"), LineKind::Notice);
        assert_eq!(classify("*** error: no such nick: x"), LineKind::Error);
    }

    #[test]
    fn plain_rendering_is_the_line_itself() {
        assert_eq!(render("ann: a: b", LineKind::Chat, false), "ann: a: b");
    }

    #[test]
    fn colour_sets_apart_nick_notices_and_private_messages() {
        assert_eq!(render("ann: hi: there", LineKind::Chat, true), "\x1b[1mann:\x1b[0m hi: there");
        assert!(render("*** x", LineKind::Notice, true).starts_with("\x1b[33m"));
        assert!(render("[PM from a] x", LineKind::Private, true).starts_with("\x1b[35m"));
        assert!(render("*** error: x", LineKind::Error, true).starts_with("\x1b[31m"));
        assert_eq!(render("ann: @bob hi", LineKind::Mention, true), "\x1b[1;7mann: @bob hi\x1b[0m");
        assert_eq!(
            render("ann: @bob hi", LineKind::Mention, false),
            "ann: @bob hi",
            "piped: the line itself"
        );
    }

    #[test]
    fn escape_sequences_from_other_users_are_removed() {
        assert_eq!(render("eve: \x1b[2Jgotcha\x07", LineKind::Chat, false), "eve: [2Jgotcha");
        assert_eq!(render("*** a\n*** b", LineKind::Notice, false), "*** a\n*** b");
    }
}
