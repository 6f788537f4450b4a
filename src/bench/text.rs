//! Chat-like text for the bench's messages (`--text-size MIN..MAX`): lines of a random length
//! made of English words, so that what compresses on the wire compresses as a chat does, not
//! as a run of `x` (which deflate shrinks to nothing) or random bytes (which it cannot shrink).
//!
//! Words are drawn from a list of common English and chat words, in order of frequency, with a
//! Zipf-like law (the word of rank r about as often as 1/r), in sentences of 3 to 14 words that
//! begin with a capital and end with `.`, `?`, `!` or `,`. Lines are built in the sender's
//! reused buffer: generating one allocates nothing.

use std::fmt;

use crate::rng::Rng;

/// The range of line lengths `--text-size` asks for, in bytes, the token included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSize {
    pub min: usize,
    pub max: usize,
}

impl TextSize {
    /// `MIN..MAX` (both included) or a single `N`.
    pub fn parse(text: &str) -> Result<TextSize, String> {
        let number = |part: &str| {
            part.trim().parse::<usize>().map_err(|_| format!("{part:?} is not a number of bytes"))
        };
        let (min, max) = match text.split_once("..") {
            Some((min, max)) => (number(min)?, number(max.strip_prefix('=').unwrap_or(max))?),
            None => (number(text)?, number(text)?),
        };
        if min > max {
            return Err(format!("{min} is more than {max}"));
        }
        Ok(TextSize { min, max })
    }

    /// A length in the range, uniformly.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        self.min + rng.below((self.max - self.min + 1) as u64) as usize
    }
}

impl fmt::Display for TextSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.min == self.max {
            true => write!(f, "{}", self.min),
            false => write!(f, "{}..{}", self.min, self.max),
        }
    }
}

/// Common words, most frequent first.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "I", "to", "a", "and", "you", "it", "is", "of", "that", "in", "we", "for", "on", "this", "be",
    "have", "with", "not", "but", "do", "so", "was", "are", "just", "what", "can", "at", "if", "me", "my",
    "it's", "there", "think", "all", "know", "like", "get", "will", "about", "would", "don't", "yes", "no",
    "they", "one", "from", "or", "an", "up", "out", "now", "then", "how", "when", "good", "time", "ok",
    "go", "see", "thanks", "some", "our", "need", "should", "could", "right", "here", "want", "still",
    "more", "make", "work", "new", "also", "by", "today", "tomorrow", "yeah", "any", "been", "because",
    "really", "going", "let", "look", "did", "people", "which", "them", "who", "why", "back", "after",
    "where", "well", "only", "first", "last", "other", "again", "meeting", "please", "sure", "maybe",
    "never", "always", "something", "week", "day", "said", "take", "come", "thing", "much", "very", "way",
    "over", "into", "try", "before", "same", "two", "three", "lot", "little", "long", "call", "find",
    "give", "tell", "ask", "feel", "put", "test", "build", "deploy", "release", "server", "branch", "issue",
    "review", "change", "fix", "bug", "code", "team", "plan", "idea", "check", "question", "answer",
    "problem", "sorry", "great", "nice", "cool", "done", "soon", "later", "lunch", "coffee", "morning",
    "afternoon", "tonight", "weekend", "probably", "actually", "anyway", "already", "though", "else",
    "everyone", "somebody", "nothing", "everything", "number", "part", "place", "point", "hand", "world",
    "house", "home", "school", "money", "story", "fact", "month", "book", "word", "water", "room", "night",
    "game", "music", "picture", "train", "weather", "minutes", "hours", "moment", "message", "window",
    "phone", "screen", "office", "city", "different", "important", "possible", "small", "large", "happy",
    "easy", "hard", "early", "late", "quick", "slow", "quiet", "busy", "ready", "free", "wrong", "true",
    "better", "best", "worse", "enough", "almost", "together", "between", "through", "without", "around",
    "against", "during", "under", "above", "behind", "remember", "understand", "believe", "happen",
    "follow", "start", "stop", "finish", "wait", "send", "read", "write", "open", "close", "move", "bring",
    "leave", "keep", "begin", "show", "hear", "play", "run", "walk", "talk", "turn", "seem", "help", "meet",
    "pay", "learn", "stay", "watch", "agree",
];

/// Ways a sentence ends, the commonest first.
const ENDINGS: &[u8] = b"..,?!.,.";

/// A word with a Zipf-like law: `(N + 1)^u - 1` for u uniform in [0, 1) gives rank r with
/// probability log((r + 2) / (r + 1)) / log(N + 1), about proportional to 1 / (r + 1.5).
fn word(rng: &mut Rng) -> &'static str {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let rank = ((WORDS.len() + 1) as f64).powf(u) as usize;
    WORDS[rank.saturating_sub(1).min(WORDS.len() - 1)]
}

/// Appends chat-like text to `out` until it is `len` bytes long (a space first, when `out` is
/// not empty). The last word is cut short if it does not fit.
pub fn fill(out: &mut Vec<u8>, len: usize, rng: &mut Rng) {
    let mut left_in_sentence = 0;
    while out.len() < len {
        if !out.is_empty() {
            out.push(b' ');
        }
        let word = word(rng).as_bytes();
        let starts_sentence = left_in_sentence == 0;
        if starts_sentence {
            left_in_sentence = 3 + rng.below(12);
        }
        let room = len.saturating_sub(out.len());
        let take = word.len().min(room);
        let at = out.len();
        out.extend_from_slice(&word[..take]);
        if starts_sentence {
            out[at..].first_mut().map(u8::make_ascii_uppercase);
        }
        left_in_sentence -= 1;
        if left_in_sentence == 0 && out.len() < len {
            out.push(ENDINGS[rng.below(ENDINGS.len() as u64) as usize]);
        }
    }
    out.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_a_range_or_one_number() {
        assert_eq!(TextSize::parse("100..500"), Ok(TextSize { min: 100, max: 500 }));
        assert_eq!(TextSize::parse("100..=500"), Ok(TextSize { min: 100, max: 500 }));
        assert_eq!(TextSize::parse("300"), Ok(TextSize { min: 300, max: 300 }));
        assert!(TextSize::parse("500..100").unwrap_err().contains("more than"));
        assert!(TextSize::parse("a..b").unwrap_err().contains("not a number"));
        assert_eq!(TextSize::parse("100..500").unwrap().to_string(), "100..500");
        assert_eq!(TextSize::parse("64").unwrap().to_string(), "64");
    }

    #[test]
    fn lines_have_the_length_asked_for_and_read_as_words() {
        let mut rng = Rng::seeded(7);
        let size = TextSize { min: 100, max: 500 };
        let mut out = Vec::new();
        let (mut shortest, mut longest) = (usize::MAX, 0);
        for _ in 0..2_000 {
            out.clear();
            out.extend_from_slice(b"~B0123~");
            let len = size.pick(&mut rng);
            fill(&mut out, len, &mut rng);
            assert_eq!(out.len(), len);
            assert!(out.is_ascii() && !out.contains(&b'"') && !out.contains(&b'\\'), "JSON needs no escapes");
            (shortest, longest) = (shortest.min(len), longest.max(len));
        }
        assert!(shortest < 110 && longest > 490, "{shortest}..{longest}");
        let text = String::from_utf8(out).unwrap();
        let words: Vec<&str> = text.split(' ').collect();
        assert!(words.len() > 15, "{text}");
        assert!(
            text.contains(['.', ',', '?', '!']) && text.chars().any(|c| c.is_ascii_uppercase()),
            "{text}"
        );
    }

    #[test]
    fn frequent_words_come_often_and_rare_ones_still_come() {
        let mut rng = Rng::seeded(11);
        let draws: Vec<&str> = (0..100_000).map(|_| word(&mut rng)).collect();
        let count = |w: &str| draws.iter().filter(|&&d| d == w).count();
        let (first, tenth) = (count(WORDS[0]), count(WORDS[9]));
        assert!(first > 5 * tenth && tenth > 0, "{first} vs {tenth}");
        assert!(count(WORDS[WORDS.len() - 1]) > 0);
    }

    #[test]
    fn text_compresses_like_text() {
        // Chat text shrinks under deflate, but nothing like a run of one letter does.
        let mut rng = Rng::seeded(3);
        let mut out = Vec::new();
        fill(&mut out, 400, &mut rng);
        let mut compressed = Vec::new();
        assert!(crate::deflate::Compressor::default().compress(&out, 15, &mut compressed));
        let ratio = out.len() as f64 / compressed.len() as f64;
        assert!((1.3..3.0).contains(&ratio), "{ratio}: {}", String::from_utf8_lossy(&out));
    }
}
