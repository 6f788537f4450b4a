//! Validation of nicks and room names: what a user may call themselves or a room.
//!
//! Both are 1 to 32 characters with no whitespace and no control characters, compared
//! case-insensitively. Nicks additionally may not contain `:` and may not start with `*` or `[`,
//! so a line on the wire can never be mistaken for another kind (`NICK: TEXT` versus a notice
//! `*** ...`, an action `* ...` or a private message `[PM ...`); see `docs/PROTOCOL.md`.

/// Longest nick or room name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a proposed nick or room name was refused; the text is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub &'static str);

fn check_common(name: &str) -> Result<(), NameError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(NameError("must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError("must be at most 32 characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError("must not contain spaces or control characters"));
    }
    Ok(())
}

/// Checks that `nick` is acceptable as a nick (uniqueness is the caller's business).
pub fn validate_nick(nick: &str) -> Result<(), NameError> {
    check_common(nick)?;
    if nick.contains(':') {
        return Err(NameError("must not contain ':'"));
    }
    if nick.starts_with('*') || nick.starts_with('[') {
        return Err(NameError("must not start with '*' or '['"));
    }
    Ok(())
}

/// Checks that `room` is acceptable as a room name.
pub fn validate_room(room: &str) -> Result<(), NameError> {
    check_common(room)
}

/// The key under which a name is unique: names differing only in case are the same name.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_nicks() {
        for nick in ["alice", "Bob_2", "guest-7", "ünïcødé", "a", &"x".repeat(32)] {
            assert_eq!(validate_nick(nick), Ok(()), "{nick}");
        }
    }

    #[test]
    fn rejects_bad_nicks() {
        for nick in
            ["", "two words", "tab\there", "nl\n", "bell\u{7}", "a:b", "*star", "[pm", &"x".repeat(33)]
        {
            assert!(validate_nick(nick).is_err(), "{nick:?} should be rejected");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert_eq!(validate_nick(&"é".repeat(32)), Ok(()));
        assert!(validate_nick(&"é".repeat(33)).is_err());
    }

    #[test]
    fn rooms_allow_what_nicks_forbid_except_space() {
        assert_eq!(validate_room("*ops:1"), Ok(()));
        assert!(validate_room("two words").is_err());
        assert!(validate_room("").is_err());
    }

    #[test]
    fn folding_is_case_insensitive() {
        assert_eq!(fold("AliCE"), fold("alice"));
    }
}
