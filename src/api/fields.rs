//! What an API request carries, read and checked: the fields of a JSON body and the
//! parameters of a query, each against the chat's own rules (a nick, a room name, one line of
//! text within `--max-message-size`, a duration). A wrong one is a `400` naming it, so the
//! application learns which field to fix. No IO, no chat state.

use std::time::Duration;

use serde_json::{Map, Value};

use super::wire::Reply;
use crate::chat::command::{cut, one_line, MAX_REASON_CHARS};
use crate::chat::names::{validate_nick, validate_room};
use crate::chat::MessageId;

/// A JSON body's fields, each taken once; a field left over is refused (a typo must not pass
/// silently as an absent optional field).
#[derive(Debug)]
pub struct Body {
    fields: Map<String, Value>,
}

impl Body {
    /// The body as a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Self, Reply> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(fields)) => Ok(Self { fields }),
            Ok(_) => Err(Reply::error(400, "the body must be a JSON object")),
            Err(e) => Err(Reply::error(400, format!("invalid JSON: {e}"))),
        }
    }

    /// String field `name`, if there.
    pub fn optional(&mut self, name: &str) -> Result<Option<String>, Reply> {
        match self.fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(Reply::error(400, format!("{name}: must be a string"))),
        }
    }

    /// String field `name`, which must be there.
    pub fn required(&mut self, name: &str) -> Result<String, Reply> {
        self.optional(name)?.ok_or_else(|| Reply::error(400, format!("{name}: missing")))
    }

    /// A room name (`room`).
    pub fn room(&mut self) -> Result<String, Reply> {
        let room = self.required("room")?;
        validate_room(&room).map_err(|why| Reply::error(400, format!("room: {}", why.0)))?;
        Ok(room)
    }

    /// A nick (`nick`), or the name an application speaks as (`from`, `server` by default).
    pub fn nick(&mut self, name: &str, default: Option<&str>) -> Result<String, Reply> {
        let nick = match default {
            Some(default) => self.optional(name)?.unwrap_or_else(|| default.to_string()),
            None => self.required(name)?,
        };
        validate_nick(&nick).map_err(|why| Reply::error(400, format!("{name}: {}", why.0)))?;
        Ok(nick)
    }

    /// The text of a message: one line, not blank, at most `max_bytes` (the chat's
    /// `--max-message-size`).
    pub fn text(&mut self, max_bytes: usize) -> Result<String, Reply> {
        let text = self.required("text")?;
        let refused = |why: String| Err(Reply::error(400, format!("text: {why}")));
        if text.trim().is_empty() {
            return refused("blank".into());
        }
        if text.len() > max_bytes {
            return refused(format!("{} bytes, over --max-message-size ({max_bytes})", text.len()));
        }
        match one_line(&text) {
            Ok(()) => Ok(text),
            Err(why) => refused(why.into()),
        }
    }

    /// A moderation reason (`reason`): one line, cut like a `/kick` reason.
    pub fn reason(&mut self) -> Result<Option<String>, Reply> {
        let Some(reason) = self.optional("reason")? else { return Ok(None) };
        one_line(&reason).map_err(|why| Reply::error(400, format!("reason: {why}")))?;
        Ok(Some(cut(reason.trim(), MAX_REASON_CHARS).to_string()).filter(|r| !r.is_empty()))
    }

    /// A ban's length (`duration`: `10m`, `2h`, `1d`).
    pub fn duration(&mut self) -> Result<Duration, Reply> {
        let text = self.required("duration")?;
        match crate::units::parse_duration(&text) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(Reply::error(400, "duration: must be more than 0")),
            Err(why) => Err(Reply::error(400, format!("duration: {why}"))),
        }
    }

    /// Refuses a field nobody took.
    pub fn done(self) -> Result<(), Reply> {
        match self.fields.keys().next() {
            Some(name) => Err(Reply::error(400, format!("{}: unknown field", cut(name, 64)))),
            None => Ok(()),
        }
    }
}

/// Query parameter `name`, which must be there: 400 naming it otherwise.
pub fn required(query: &str, name: &str) -> Result<String, Reply> {
    param(query, name)?.ok_or_else(|| Reply::error(400, format!("{name}: missing")))
}

/// A message id parameter (`since`), if there.
pub fn message_id(query: &str, name: &str) -> Result<Option<MessageId>, Reply> {
    let Some(id) = param(query, name)? else { return Ok(None) };
    let bad = || Reply::error(400, format!("{name}: not a message id (EPOCH:SEQ)"));
    MessageId::parse(&id).map(Some).ok_or_else(bad)
}

/// A count parameter between 1 and `max`, `default` if absent.
pub fn count(query: &str, name: &str, default: usize, max: usize) -> Result<usize, Reply> {
    let Some(text) = param(query, name)? else { return Ok(default) };
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Reply::error(400, format!("{name}: a number from 1 to {max}"))),
    }
}

/// Query parameter `name`, `%XX` escapes decoded (a `+` is kept as is: private rooms start
/// with one).
pub fn param(query: &str, name: &str) -> Result<Option<String>, Reply> {
    let Some(raw) = query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')) else {
        return Ok(None);
    };
    let bad = || Reply::error(400, format!("{name}: bad %-escape or not UTF-8"));
    let (bytes, mut decoded) = (raw.as_bytes(), Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
            decoded.push(hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad)?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Body {
        Body::parse(json.as_bytes()).unwrap()
    }

    fn error(result: Result<impl std::fmt::Debug, Reply>) -> String {
        let reply = result.unwrap_err();
        assert_eq!(reply.status, 400);
        let value: Value = serde_json::from_str(&reply.body).unwrap();
        value["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn fields_are_checked_by_the_chat_s_rules_and_named_when_wrong() {
        assert_eq!(error(Body::parse(b"[1]")), "the body must be a JSON object");
        assert!(error(Body::parse(b"{\"room\":")).starts_with("invalid JSON: "));
        assert_eq!(error(body(r#"{"room": 5}"#).room()), "room: must be a string");
        assert_eq!(error(body("{}").room()), "room: missing");
        assert!(error(body(r#"{"room": "a b"}"#).room()).starts_with("room: "));
        assert_eq!(body(r#"{}"#).nick("from", Some("server")).unwrap(), "server");
        assert!(error(body(r#"{"from": "*bot"}"#).nick("from", Some("server"))).starts_with("from: "));
        assert_eq!(error(body(r#"{"text": "  "}"#).text(100)), "text: blank");
        assert!(error(body(r#"{"text": "a\nb"}"#).text(100)).starts_with("text: a message is one line"));
        assert!(error(body(r#"{"text": "abcdef"}"#).text(5)).contains("over --max-message-size (5)"));
        assert_eq!(body(r#"{"text": "deploy done"}"#).text(100).unwrap(), "deploy done");
        assert_eq!(body(r#"{"reason": "  "}"#).reason().unwrap(), None);
        assert_eq!(body(r#"{"duration": "10m"}"#).duration().unwrap(), Duration::from_secs(600));
        assert!(error(body(r#"{"duration": "10"}"#).duration()).starts_with("duration: "));
        assert_eq!(error(body(r#"{"duration": "0"}"#).duration()), "duration: must be more than 0");
        let mut typo = body(r#"{"room": "lobby", "txt": "hi"}"#);
        typo.room().unwrap();
        assert_eq!(error(typo.done()), "txt: unknown field");
    }

    #[test]
    fn query_parameters() {
        assert_eq!(required("x=1&room=%2Bops", "room").unwrap(), "+ops");
        assert_eq!(error(required("x=1", "room")), "room: missing");
        for bad in ["room=%zz", "room=%+1", "room=a%", "room=%ff"] {
            assert!(error(required(bad, "room")).starts_with("room: bad %-escape"), "{bad}");
        }
        assert_eq!(message_id("since=ab12:7", "since").unwrap(), MessageId::parse("ab12:7"));
        assert_eq!(error(message_id("since=7", "since")), "since: not a message id (EPOCH:SEQ)");
        assert_eq!(count("", "limit", 100, 1000).unwrap(), 100);
        assert_eq!(count("limit=1000", "limit", 100, 1000).unwrap(), 1000);
        for bad in ["limit=0", "limit=1001", "limit=x"] {
            assert_eq!(error(count(bad, "limit", 100, 1000)), "limit: a number from 1 to 1000");
        }
    }
}
