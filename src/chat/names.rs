//! Validation of nicks and room names: what a user may call themselves or a room, and when two
//! names are the same name.
//!
//! Both are 1 to 32 characters with no whitespace and no control characters. Nicks
//! additionally may not contain `:` and may not start with `*` or `[`, so a line on the wire can
//! never be mistaken for another kind (`NICK: TEXT` versus a notice `*** ...`, an action `* ...`
//! or a private message `[PM ...`); see `docs/PROTOCOL.md`.
//!
//! A name must also not be able to pass for another one (Unicode Technical Standard #39, with
//! the data of the `unicode-security` and `unicode-normalization` crates):
//! - every non-ASCII character must be allowed in identifiers by UTS #39's General Security
//!   Profile, which rules out invisible and format characters (zero-width spaces, bidi
//!   overrides), fillers and blanks that look like nothing (`ㅤ`, `⠀`), and rare or obsolete
//!   scripts;
//! - the name must be in NFKC form, which rules out compatibility look-alikes (fullwidth `＊`,
//!   mathematical bold letters);
//! - it must be single-script (Latin with Cyrillic, as in `аlice` with a Cyrillic `а`, is
//!   refused; digits and ASCII punctuation go with any script);
//! - and two names are the same name when their confusable skeletons match after case folding
//!   ([`fold`]): `alice`, `ALICE` and `a1ice` cannot all be taken. (Case folds first, so an
//!   upper-case `I` counts as `i`, not as the `l` it resembles in some fonts.)

use unicode_normalization::UnicodeNormalization;
use unicode_security::{skeleton, GeneralSecurityProfile, MixedScript};

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
    if name.chars().any(|c| !c.is_ascii() && !c.identifier_allowed()) {
        return Err(NameError("must not contain invisible, blank, format or unusual characters"));
    }
    if !name.nfkc().eq(name.chars()) {
        return Err(NameError("must not use look-alike forms such as fullwidth or styled letters"));
    }
    if !name.is_single_script() {
        return Err(NameError("must not mix scripts, such as Latin with Cyrillic letters"));
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

/// The key under which a name is unique: names that differ only in case, or that look alike
/// (the same UTS #39 confusable skeleton), are the same name.
pub fn fold(name: &str) -> String {
    let lower: String = name.nfkc().flat_map(char::to_lowercase).collect();
    skeleton(&lower).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_nicks() {
        for nick in [
            "alice",
            "Bob_2",
            "guest-7",
            "ünïcødé",
            "a",
            &"x".repeat(32),
            "Алиса",
            "アリス",
            "李小龙",
            "ann.b",
        ] {
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
    fn rejects_nicks_that_can_pass_for_another() {
        for nick in [
            "alice\u{200b}",            // zero-width space
            "\u{202e}ecila",            // right-to-left override
            "ali\u{ad}ce",              // soft hyphen
            "\u{3164}",                 // Hangul filler: looks blank
            "\u{2800}\u{2800}\u{2800}", // braille blanks
            "\u{ff0a}\u{ff0a}\u{ff0a}", // fullwidth asterisks
            "\u{1d41a}lice",            // mathematical bold a
            "\u{430}lice",              // Cyrillic а among Latin letters
        ] {
            assert!(validate_nick(nick).is_err(), "{nick:?} should be rejected");
            assert!(validate_room(nick).is_err(), "{nick:?} should be rejected as a room");
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
    fn names_that_look_alike_fold_to_one_key() {
        assert_eq!(fold("AliCE"), fold("alice"));
        assert_eq!(fold("a1ice"), fold("alice"));
        assert_eq!(fold("rn"), fold("m"));
        assert_eq!(fold("\u{430}lice"), fold("alice"), "even where validation would let one through");
        assert_ne!(fold("alice"), fold("bob"));
        // The lobby's key is its name: the chat creates it under that key.
        assert_eq!(fold(crate::chat::LOBBY), crate::chat::LOBBY);
    }
}
