//! What reaches the log on a client's behalf: escaped, cut short, and rate-limited.
//!
//! Anything a client chose (a nick, an `Origin`, a close reason, a request body) is written
//! with [`quoted`]: `{:?}`-style escaping, so a newline or an escape sequence shows as `\n` or
//! `\u{1b}` instead of starting a forged log line or driving the operator's terminal, and cut to
//! a few dozen characters, so a client cannot make one log line kilobytes long.
//!
//! Warnings a client can trigger at will (refused origins, protocol errors, rate limits, slow
//! readers, timeouts) go through [`remote_warn!`](crate::remote_warn): at most
//! [`WARNINGS_PER_SECOND`] reach the `warn` level, the rest are logged at `debug` (and counted:
//! the next such warning, in a later second, is preceded by one line saying how many), so a
//! crowd of misbehaving clients cannot flood the log or spend the loop's time writing it.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::Instant;

/// Client-triggered warnings logged at `warn` per second; the rest go to `debug`.
pub const WARNINGS_PER_SECOND: u32 = 20;

/// Longest client-chosen text put in a log line, in characters.
pub const MAX_QUOTED_CHARS: usize = 64;

/// `text` escaped like `{:?}` and cut to [`MAX_QUOTED_CHARS`] characters (with `…` after a cut).
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_QUOTED_CHARS) + 8);
    out.push('"');
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_QUOTED_CHARS) {
        let _ = write!(out, "{}", c.escape_debug());
    }
    out.push('"');
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

thread_local! {
    /// The second the count is for, and warnings logged in it.
    static WINDOW: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    static START: Instant = Instant::now();
}

/// Whether one more client-triggered warning may be logged at `warn` this second.
pub fn warning_allowed() -> bool {
    let second = START.with(|start| start.elapsed().as_secs());
    WINDOW.with(|window| {
        let (at, count) = window.get();
        if at != second && count > WARNINGS_PER_SECOND {
            // The count of what went to debug, so the operator knows how much there was; said
            // at the next such warning, which may come much later, so it says when.
            log::warn!(
                "{} more client-triggered warnings went to the debug level {}s ago",
                count - WARNINGS_PER_SECOND,
                second - at
            );
        }
        let count = if at == second { count } else { 0 };
        window.set((second, count.saturating_add(1)));
        count < WARNINGS_PER_SECOND
    })
}

/// `warn!` for events a client can trigger at will: rate-limited to
/// [`WARNINGS_PER_SECOND`](crate::logline::WARNINGS_PER_SECOND), the excess at `debug`.
#[macro_export]
macro_rules! remote_warn {
    ($($arg:tt)*) => {
        if $crate::logline::warning_allowed() {
            log::warn!($($arg)*);
        } else {
            log::debug!($($arg)*);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_escaped_and_cut() {
        assert_eq!(quoted("alice"), "\"alice\"");
        assert_eq!(
            quoted("hi\n[WARN] admin logged in\u{1b}[2J"),
            "\"hi\\n[WARN] admin logged in\\u{1b}[2J\""
        );
        let long = quoted(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_QUOTED_CHARS + 3);
        assert!(long.ends_with("\"…"));
    }

    #[test]
    fn warnings_are_limited_per_second() {
        let allowed = (0..100).filter(|_| warning_allowed()).count();
        assert!(allowed <= WARNINGS_PER_SECOND as usize, "{allowed}");
        assert!(allowed >= 1);
    }
}
