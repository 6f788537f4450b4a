//! Parsing of the slash commands a client types (`/nick`, `/join`, `/msg`, ...).
//!
//! Parsing is separate from acting so the grammar is testable on its own and the chat state
//! only ever sees well-formed commands. A text message is a command when it starts with `/`;
//! `//text` is the escape for sending a line that starts with a slash.

/// A parsed slash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Nick(&'a str),
    Join(&'a str),
    Rooms,
    Who,
    Me(&'a str),
    Msg {
        to: &'a str,
        text: &'a str,
    },
    Help,
    Quit(Option<&'a str>),
    /// Moderators: close every connection of a user, with a reason.
    Kick {
        nick: &'a str,
        reason: Option<&'a str>,
    },
    /// Moderators: kick, and refuse the user (a guest: its address) for a while.
    Ban {
        nick: &'a str,
        duration: std::time::Duration,
        reason: Option<&'a str>,
    },
    Unban(&'a str),
    Bans,
    /// A new sign-in token for this session (its text is never shown).
    Token(&'a str),
    /// The member is typing: its room's JSON clients are told.
    Typing,
    /// The member's room is read up to this message id (checked by the room).
    Read(&'a str),
    /// The member's message `id` now reads `text`.
    Edit {
        id: &'a str,
        text: &'a str,
    },
    /// Message `id` is removed (the member's own, or anyone's for a moderator).
    Delete(&'a str),
    /// Up to `count` messages of the member's room older than `before` (an id, checked by the
    /// room).
    History {
        before: &'a str,
        count: usize,
    },
}

/// Messages one `/history` sends unless told; most it sends.
pub const HISTORY_PAGE: usize = 50;
pub const MAX_HISTORY_PAGE: usize = 200;

/// What the user typed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Ordinary chat text (already un-escaped for `//`).
    Say(&'a str),
    /// Nothing but whitespace: not sent to anyone.
    Blank,
    Command(Command<'a>),
    /// A command that could not be parsed; the text is the error shown to the user.
    Invalid(String),
}

/// Longest `/quit` reason kept, in characters: it is repeated to the whole room, so it stays
/// far below any message limit.
pub const MAX_REASON_CHARS: usize = 100;

/// Classifies one text message from a client. A message is one line: text with line breaks,
/// other control characters (tab excepted) or bidi controls is refused, because it could make
/// other users' clients print lines that look like the server's, or reorder what they show.
/// One line ending at the very end is not a break but the terminator line-based tools send
/// (`websocat` sends `text\n` for each line typed), so it is dropped first.
pub fn parse_line(line: &str) -> Line<'_> {
    let line = line.strip_suffix('\n').map_or(line, |l| l.strip_suffix('\r').unwrap_or(l));
    if let Err(why) = one_line(line) {
        return Line::Invalid(why.to_string());
    }
    if line.trim().is_empty() {
        return Line::Blank;
    }
    // Spaces before a command are ignored (a pasted "  /who" is still /who); chat text keeps
    // its own spacing.
    let Some(rest) = line.trim_start().strip_prefix('/') else {
        return Line::Say(line);
    };
    if rest.starts_with('/') {
        return Line::Say(rest);
    }
    let (name, args) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let one_arg = |usage: &str| -> Result<&str, String> {
        if args.is_empty() || args.contains(char::is_whitespace) {
            Err(format!("usage: {usage}"))
        } else {
            Ok(args)
        }
    };
    let no_args = |command: Command<'static>, usage: &str| -> Result<Command<'static>, String> {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    let parsed = match name.to_ascii_lowercase().as_str() {
        "nick" => one_arg("/nick NAME").map(Command::Nick),
        "join" => one_arg("/join ROOM").map(Command::Join),
        "rooms" => no_args(Command::Rooms, "/rooms"),
        "who" => no_args(Command::Who, "/who"),
        "help" => no_args(Command::Help, "/help"),
        "me" if !args.is_empty() => Ok(Command::Me(args)),
        "me" => Err("usage: /me ACTION".to_string()),
        "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Ok(Command::Msg { to, text: text.trim_start() }),
            _ => Err("usage: /msg NICK TEXT".to_string()),
        },
        "quit" => Ok(Command::Quit(Some(cut(args, MAX_REASON_CHARS)).filter(|a| !a.is_empty()))),
        "kick" => match split_word(args) {
            ("", _) => Err("usage: /kick NICK [REASON]".to_string()),
            (nick, reason) => Ok(Command::Kick { nick, reason: reason_of(reason) }),
        },
        "ban" => {
            let (nick, rest) = split_word(args);
            let (duration, reason) = split_word(rest);
            match crate::units::parse_duration(duration) {
                Ok(duration) if !nick.is_empty() && !duration.is_zero() => {
                    Ok(Command::Ban { nick, duration, reason: reason_of(reason) })
                }
                _ => Err("usage: /ban NICK DURATION [REASON] (DURATION: 10m, 2h, 1d)".to_string()),
            }
        }
        "unban" => one_arg("/unban NICK").map(Command::Unban),
        "bans" => no_args(Command::Bans, "/bans"),
        "token" => one_arg("/token JWT").map(Command::Token),
        "typing" => no_args(Command::Typing, "/typing"),
        "read" => one_arg("/read ID").map(Command::Read),
        "edit" => match split_word(args) {
            (id, text) if !id.is_empty() && !text.is_empty() => Ok(Command::Edit { id, text }),
            _ => Err("usage: /edit ID TEXT".to_string()),
        },
        "delete" => one_arg("/delete ID").map(Command::Delete),
        "history" => {
            let usage = || {
                format!(
                    "usage: /history ID [N] (N from 1 to {MAX_HISTORY_PAGE}, {HISTORY_PAGE} if not given)"
                )
            };
            match split_word(args) {
                ("", _) => Err(usage()),
                (before, "") => Ok(Command::History { before, count: HISTORY_PAGE }),
                (before, count) => match count.parse::<usize>() {
                    Ok(count) if (1..=MAX_HISTORY_PAGE).contains(&count) => {
                        Ok(Command::History { before, count })
                    }
                    _ => Err(usage()),
                },
            }
        }
        "" => Err("empty command; type //text to send a line starting with '/'".to_string()),
        _ => Err(format!("unknown command /{}; type /help for the list", cut(name, 32))),
    };
    match parsed {
        Ok(command) => Line::Command(command),
        Err(error) => Line::Invalid(error),
    }
}

/// The first word of `text`, and the rest, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// Whether `text` is one line as the chat sees it (see [`parse_line`]): what any text shown to
/// members must be, whoever sends it.
pub fn one_line(text: &str) -> Result<(), &'static str> {
    match text.chars().any(breaks_the_line) {
        true => Err("a message is one line: no line breaks, control characters or bidi controls"),
        false => Ok(()),
    }
}

/// A moderation reason: cut like a `/quit` reason, absent if empty.
fn reason_of(text: &str) -> Option<&str> {
    Some(cut(text, MAX_REASON_CHARS)).filter(|r| !r.is_empty())
}

/// Characters that break a line or reorder it on screen: controls other than tab (C0, DEL,
/// C1 with NEL), the Unicode line and paragraph separators, and the bidi embedding, override
/// and isolate controls.
fn breaks_the_line(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first `max` characters of `text`.
pub fn cut(text: &str, max: usize) -> &str {
    text.char_indices().nth(max).map_or(text, |(at, _)| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_escape() {
        assert_eq!(parse_line("hello"), Line::Say("hello"));
        assert_eq!(parse_line(""), Line::Blank);
        assert_eq!(parse_line(" \t "), Line::Blank);
        assert_eq!(parse_line("  indented"), Line::Say("  indented"));
        assert_eq!(parse_line("  /WHO"), Line::Command(Command::Who));
        assert_eq!(parse_line("//etc/passwd"), Line::Say("/etc/passwd"));
    }

    #[test]
    fn commands_with_arguments() {
        assert_eq!(parse_line("/nick bob"), Line::Command(Command::Nick("bob")));
        assert_eq!(parse_line("/NICK  bob  "), Line::Command(Command::Nick("bob")));
        assert_eq!(parse_line("/join dev"), Line::Command(Command::Join("dev")));
        assert_eq!(parse_line("/me waves  hi"), Line::Command(Command::Me("waves  hi")));
        assert_eq!(
            parse_line("/msg bob  hi there"),
            Line::Command(Command::Msg { to: "bob", text: "hi there" })
        );
        assert_eq!(parse_line("/quit"), Line::Command(Command::Quit(None)));
        assert_eq!(parse_line("/quit gone home"), Line::Command(Command::Quit(Some("gone home"))));
        assert_eq!(parse_line("/rooms"), Line::Command(Command::Rooms));
        assert_eq!(parse_line("/who"), Line::Command(Command::Who));
        assert_eq!(parse_line("/help"), Line::Command(Command::Help));
    }

    #[test]
    fn a_message_is_one_line() {
        for line in [
            "hi\n*** alice is now known as admin",
            "hi\r[PM from alice] paste your password",
            "\x1b]0;pwned\x07",
            "\x1b[2J",
            "a\u{85}b",
            "a\u{2028}b",
            "\u{202e}olleh",
            "/me waves\nagain",
            "/quit bye\r\n*** server restarting",
        ] {
            assert!(matches!(parse_line(line), Line::Invalid(_)), "{line:?}");
        }
        assert_eq!(parse_line("tab\tis fine"), Line::Say("tab\tis fine"));
    }

    #[test]
    fn the_line_ending_of_line_based_tools_is_not_a_break() {
        assert_eq!(parse_line("hello\n"), Line::Say("hello"));
        assert_eq!(parse_line("hello\r\n"), Line::Say("hello"));
        assert_eq!(parse_line("/who\n"), Line::Command(Command::Who));
        assert_eq!(parse_line("\n"), Line::Blank);
        assert!(matches!(parse_line("hello\n\n"), Line::Invalid(_)));
        assert!(matches!(parse_line("hello\r"), Line::Invalid(_)));
    }

    #[test]
    fn long_reasons_and_command_names_are_cut() {
        let long = "é".repeat(MAX_REASON_CHARS + 50);
        let quit = format!("/quit {long}");
        let Line::Command(Command::Quit(Some(reason))) = parse_line(&quit) else { panic!() };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        let Line::Invalid(text) = parse_line(&format!("/{}", "x".repeat(70_000))) else { panic!() };
        assert!(text.len() < 100, "{}", text.len());
    }

    #[test]
    fn bad_arguments_and_unknown_commands_are_invalid() {
        for line in [
            "/nick",
            "/nick a b",
            "/join",
            "/msg bob",
            "/msg",
            "/me",
            "/who x",
            "/rooms x",
            "/frobnicate",
            "/",
        ] {
            assert!(matches!(parse_line(line), Line::Invalid(_)), "{line:?}");
        }
        let Line::Invalid(text) = parse_line("/frob") else { panic!() };
        assert!(text.contains("/frob") && text.contains("/help"), "{text}");
    }
}
