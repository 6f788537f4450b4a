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
    Msg { to: &'a str, text: &'a str },
    Help,
    Quit(Option<&'a str>),
}

/// What the user typed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Ordinary chat text (already un-escaped for `//`).
    Say(&'a str),
    Command(Command<'a>),
    /// A command that could not be parsed; the text is the error shown to the user.
    Invalid(String),
}

/// Classifies one text message from a client.
pub fn parse_line(line: &str) -> Line<'_> {
    let Some(rest) = line.strip_prefix('/') else {
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
        "quit" => Ok(Command::Quit(Some(args).filter(|a| !a.is_empty()))),
        "" => Err("empty command; type //text to send a line starting with '/'".to_string()),
        other => Err(format!("unknown command /{other}; type /help for the list")),
    };
    match parsed {
        Ok(command) => Line::Command(command),
        Err(error) => Line::Invalid(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_escape() {
        assert_eq!(parse_line("hello"), Line::Say("hello"));
        assert_eq!(parse_line(""), Line::Say(""));
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
