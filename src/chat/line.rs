//! The lines the server sends, defined once: the chat builds every line it sends as a
//! [`ServerLine`], and the terminal client reads them back with [`ServerLine::parse`]. The forms
//! are those of `docs/PROTOCOL.md`:
//!
//! | form | variant |
//! |---|---|
//! | `NICK: TEXT` | [`ServerLine::Chat`] |
//! | `* NICK TEXT` | [`ServerLine::Action`] |
//! | `[PM from NICK] TEXT` | [`ServerLine::PrivateFrom`] |
//! | `[PM to NICK] TEXT` | [`ServerLine::PrivateTo`] |
//! | `[FROM] TEXT` | [`ServerLine::Api`] (an application's message, `POST /api/publish`) |
//! | `[PM from app FROM] TEXT` | [`ServerLine::PrivateFromApi`] (`POST /api/send`) |
//! | `*** error: TEXT` | [`ServerLine::Error`] |
//! | `*** binary message from NICK (N bytes)` | [`ServerLine::BinaryFrom`] (just before the binary message it announces) |
//! | `*** TEXT` | [`ServerLine::Notice`] (each line of a multi-line notice starts with `*** `) |
//!
//! The first characters decide the form unambiguously because a nick never contains whitespace
//! or `:` and never starts with `*` or `[` (see [`names`](super::names)).

use std::fmt;

/// What starts every server notice.
pub const NOTICE_PREFIX: &str = "*** ";
const ERROR_PREFIX: &str = "*** error: ";
const ACTION_PREFIX: &str = "* ";
const PM_FROM_PREFIX: &str = "[PM from ";
const PM_TO_PREFIX: &str = "[PM to ";
const PM_FROM_API_PREFIX: &str = "[PM from app ";
const BINARY_FROM_PREFIX: &str = "*** binary message from ";

/// One line as the server sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLine<'a> {
    Chat {
        nick: &'a str,
        text: &'a str,
    },
    Action {
        nick: &'a str,
        text: &'a str,
    },
    PrivateFrom {
        nick: &'a str,
        text: &'a str,
    },
    PrivateTo {
        nick: &'a str,
        text: &'a str,
    },
    /// An application's private message (the HTTP API); a member's nick has no space, so
    /// `app FROM` is no member's.
    PrivateFromApi {
        from: &'a str,
        text: &'a str,
    },
    /// An application's message in a room (the HTTP API): `from` is the name it gave, which
    /// follows the rules of a nick, so the brackets tell it from any member's line.
    Api {
        from: &'a str,
        text: &'a str,
    },
    Error(&'a str),
    /// Announces the binary message that follows it: who sent it and its length.
    BinaryFrom {
        nick: &'a str,
        len: usize,
    },
    /// A notice; its text may hold several lines, each of which gets the prefix.
    Notice(&'a str),
    /// Not one of the forms (from a server other than wschat).
    Other(&'a str),
}

impl<'a> ServerLine<'a> {
    /// Reads a line back into its form.
    pub fn parse(line: &'a str) -> Self {
        if let Some(text) = line.strip_prefix(ERROR_PREFIX) {
            Self::Error(text)
        } else if let Some((nick, len)) = line.strip_prefix(BINARY_FROM_PREFIX).and_then(parse_binary_from) {
            Self::BinaryFrom { nick, len }
        } else if let Some(text) = line.strip_prefix(NOTICE_PREFIX) {
            Self::Notice(text)
        } else if let Some((nick, text)) = line.strip_prefix(ACTION_PREFIX).and_then(|l| l.split_once(' ')) {
            Self::Action { nick, text }
        } else if let Some((from, text)) =
            line.strip_prefix(PM_FROM_API_PREFIX).and_then(|l| l.split_once("] "))
        {
            Self::PrivateFromApi { from, text }
        } else if let Some((nick, text)) = line.strip_prefix(PM_FROM_PREFIX).and_then(|l| l.split_once("] "))
        {
            Self::PrivateFrom { nick, text }
        } else if let Some((nick, text)) = line.strip_prefix(PM_TO_PREFIX).and_then(|l| l.split_once("] ")) {
            Self::PrivateTo { nick, text }
        } else if let Some((from, text)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Self::Api { from, text }
        } else if let Some((nick, text)) = line.split_once(": ").filter(|(nick, _)| is_nick_like(nick)) {
            Self::Chat { nick, text }
        } else {
            Self::Other(line)
        }
    }

    /// The line as text.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

/// `NICK (N bytes)`, the rest of a [`ServerLine::BinaryFrom`].
fn parse_binary_from(rest: &str) -> Option<(&str, usize)> {
    let (nick, len) = rest.strip_suffix(" bytes)")?.split_once(" (")?;
    Some((nick, len.parse().ok()?)).filter(|_| is_nick_like(nick))
}

/// What can stand before `: ` in a chat line.
fn is_nick_like(text: &str) -> bool {
    !text.is_empty() && !text.contains(char::is_whitespace)
}

impl fmt::Display for ServerLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chat { nick, text } => write!(f, "{nick}: {text}"),
            Self::Action { nick, text } => write!(f, "{ACTION_PREFIX}{nick} {text}"),
            Self::PrivateFrom { nick, text } => write!(f, "{PM_FROM_PREFIX}{nick}] {text}"),
            Self::PrivateTo { nick, text } => write!(f, "{PM_TO_PREFIX}{nick}] {text}"),
            Self::Api { from, text } => write!(f, "[{from}] {text}"),
            Self::PrivateFromApi { from, text } => write!(f, "{PM_FROM_API_PREFIX}{from}] {text}"),
            Self::Error(text) => write!(f, "{ERROR_PREFIX}{text}"),
            Self::BinaryFrom { nick, len } => write!(f, "{BINARY_FROM_PREFIX}{nick} ({len} bytes)"),
            Self::Notice(text) => {
                for (i, line) in text.split('\n').enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{NOTICE_PREFIX}{line}")?;
                }
                Ok(())
            }
            Self::Other(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_itself() {
        for line in [
            ServerLine::Chat { nick: "alice", text: "hi: there * [PM from x]" },
            ServerLine::Action { nick: "alice", text: "waves" },
            ServerLine::PrivateFrom { nick: "bob", text: "psst] hi" },
            ServerLine::PrivateTo { nick: "bob", text: "psst" },
            ServerLine::Api { from: "deploybot", text: "deploy 1.4 done] [PM from x] y" },
            ServerLine::Api { from: "PM", text: "from x] y" },
            ServerLine::PrivateFromApi { from: "deploybot", text: "psst" },
            ServerLine::PrivateFrom { nick: "app", text: "not an application" },
            ServerLine::Error("no such nick: carol"),
            ServerLine::BinaryFrom { nick: "alice", len: 1234 },
            ServerLine::Notice("alice joined lobby"),
        ] {
            assert_eq!(ServerLine::parse(&line.to_string()), line, "{line}");
        }
    }

    #[test]
    fn lines_look_as_the_protocol_says() {
        assert_eq!(ServerLine::Chat { nick: "a", text: "b" }.to_string(), "a: b");
        assert_eq!(ServerLine::Action { nick: "a", text: "b" }.to_string(), "* a b");
        assert_eq!(ServerLine::PrivateFrom { nick: "a", text: "b" }.to_string(), "[PM from a] b");
        assert_eq!(ServerLine::PrivateTo { nick: "a", text: "b" }.to_string(), "[PM to a] b");
        assert_eq!(ServerLine::Api { from: "a", text: "b" }.to_string(), "[a] b");
        assert_eq!(ServerLine::Error("x").to_string(), "*** error: x");
        assert_eq!(
            ServerLine::BinaryFrom { nick: "a", len: 3 }.to_string(),
            "*** binary message from a (3 bytes)"
        );
        assert_eq!(ServerLine::Notice("one\ntwo").to_string(), "*** one\n*** two");
    }

    #[test]
    fn lines_from_other_servers_are_other() {
        assert_eq!(ServerLine::parse("hello world"), ServerLine::Other("hello world"));
        assert_eq!(ServerLine::parse("two words: no"), ServerLine::Other("two words: no"));
    }
}
