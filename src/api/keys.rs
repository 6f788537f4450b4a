//! The API keys (`--api-key-file FILE`): read from the file at start and again on SIGHUP,
//! checked in constant time, never shown.
//!
//! The file holds one key per line; blank lines and lines starting with `#` are ignored, and
//! the whitespace around each key is not part of it. A key shorter than [`MIN_KEY_LEN`] is an
//! error (the whole file is refused: a key too easily guessed is worse than a start that fails),
//! and so is a file without keys. The keys never reach the log nor a `Debug` string: errors
//! name a key by its line number only.

use std::fmt;
use std::path::{Path, PathBuf};

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Longest key accepted, in bytes: a presented key is compared with every key in full, so
/// neither may make that comparison long.
pub const MAX_KEY_LEN: usize = 1024;

/// The keys an API request may carry, and the file they come from.
#[derive(Clone)]
pub struct ApiKeys {
    file: PathBuf,
    keys: Vec<Box<[u8]>>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        write!(f, "ApiKeys {{ file: {:?}, keys: {} }}", self.file, self.keys.len())
    }
}

impl ApiKeys {
    /// Reads the keys in `file`; the error says which line is wrong, never what it holds.
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the API key file {}: {e}", file.display()))?;
        Self::from_text(file, &text)
    }

    /// The keys in `text`, as if read from `file`.
    pub fn from_text(file: &Path, text: &str) -> Result<Self, String> {
        let keys = parse(text).map_err(|why| format!("API key file {}: {why}", file.display()))?;
        Ok(Self { file: file.to_path_buf(), keys })
    }

    /// The keys now in the same file (SIGHUP).
    pub fn reload(&self) -> Result<Self, String> {
        Self::load(&self.file)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared in full, whatever matches,
    /// so the time taken says nothing of how much of which key was right.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let presented = &presented[..presented.len().min(MAX_KEY_LEN + 1)];
        self.keys.iter().fold(false, |found, key| found | same(key, presented))
    }
}

/// The keys in a key file's text.
fn parse(text: &str) -> Result<Vec<Box<[u8]>>, String> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let key = line.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        if key.len() < MIN_KEY_LEN || key.len() > MAX_KEY_LEN {
            return Err(format!(
                "the key on line {} is {} bytes long: keys are {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes",
                number + 1,
                key.len()
            ));
        }
        keys.push(key.as_bytes().into());
    }
    if keys.is_empty() {
        return Err("no key in it (one key per line, at least 16 characters)".into());
    }
    Ok(keys)
}

/// Compares two byte strings in time that depends on their lengths only.
fn same(key: &[u8], presented: &[u8]) -> bool {
    let mut difference = u8::from(key.len() != presented.len());
    for (i, &byte) in key.iter().enumerate() {
        difference |= byte ^ presented.get(i).copied().unwrap_or(!byte);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> ApiKeys {
        ApiKeys { file: PathBuf::from("keys"), keys: parse(text).unwrap() }
    }

    #[test]
    fn one_key_a_line_comments_and_blank_lines_ignored() {
        let keys = keys("# deploy bot\n\n  0123456789abcdef  \nsecond-key-of-16-bytes\n");
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts(b"0123456789abcdef"));
        assert!(keys.accepts(b"second-key-of-16-bytes"));
        assert!(!keys.accepts(b"0123456789abcdeF"));
        assert!(!keys.accepts(b"0123456789abcde"));
        assert!(!keys.accepts(b"0123456789abcdef0"));
        assert!(!keys.accepts(b""));
    }

    #[test]
    fn a_short_key_or_no_key_refuses_the_file_without_showing_it() {
        let error = parse("0123456789abcdef\nshort-secret\n").unwrap_err();
        assert!(error.contains("line 2") && !error.contains("short-secret"), "{error}");
        assert!(parse("# only a comment\n\n").is_err());
        let keys = keys("0123456789abcdef");
        assert!(!format!("{keys:?}").contains("0123456789abcdef"));
    }
}
