//! What the terminal client remembers across connections, so a reconnect loses nothing: its
//! nick and room as the server last told them, and the last message id it saw in each room.
//! Every connection after the first asks for `room=` and `since=` (see `docs/PROTOCOL.md`,
//! "Resume"), and the server replays exactly what was missed or says it cannot.

use std::collections::HashMap;

use crate::chat::Event;

use super::percent_encode;

/// Nick, room and last ids, updated from what the server sends in JSON mode.
#[derive(Debug, Default)]
pub struct Resume {
    /// The nick the user chose (`--nick`, or a `/nick` the server accepted): asked for again on
    /// every reconnect, even if the server gave a guest nick meanwhile (the old connection
    /// may still have held it).
    chosen: Option<String>,
    /// The nick the server gave this connection.
    nick: Option<String>,
    room: Option<String>,
    /// Last id seen per room (by the room's name as the server shows it).
    last_ids: HashMap<String, String>,
    /// This connection asked to resume (it sent `since`).
    resuming: bool,
    /// The sign-in token (`--token`), sent with every connection; a newer one replaces it.
    pub token: Option<String>,
    /// Where `--token` came from, read again when the session expires.
    pub token_file: Option<std::path::PathBuf>,
    /// `/ids on`: each room message is shown with its id before it (for `/history ID`).
    pub show_ids: bool,
}

/// `url` with its `token=` value elided, for showing.
pub fn without_token(url: &str) -> String {
    match url.find("token=") {
        Some(at) => {
            let end = url[at..].find('&').map_or(url.len(), |i| at + i);
            format!("{}token=…{}", &url[..at], &url[end..])
        }
        None => url.to_string(),
    }
}

impl Resume {
    /// Starts from the nick the user asked for (`--nick`), if any.
    pub fn new(nick: Option<String>) -> Self {
        Self { chosen: nick, ..Self::default() }
    }

    /// The URL of the next connection: `base` (scheme, host, port, path) with the nick, and,
    /// once the client has been somewhere, the room and the last id it saw there.
    pub fn url(&mut self, base: &str) -> String {
        let mut query = Vec::new();
        if let Some(token) = &self.token {
            query.push(format!("token={}", percent_encode(token)));
        } else if let Some(nick) = self.chosen.as_ref().or(self.nick.as_ref()) {
            query.push(format!("nick={}", percent_encode(nick)));
        }
        let since = self.room.as_ref().and_then(|room| self.last_ids.get(room));
        if let Some(room) = &self.room {
            query.push(format!("room={}", percent_encode(room)));
        }
        if let Some(since) = since {
            query.push(format!("since={}", percent_encode(since)));
        }
        self.resuming = since.is_some();
        if query.is_empty() {
            return base.to_string();
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}{}", query.join("&"))
    }

    /// Takes note of an event; returns a line to show the user about it, if any (a gap in
    /// what was replayed).
    pub fn note(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::Welcome { nick, room } => {
                self.nick = Some(nick.to_string());
                self.room = Some(room.to_string());
            }
            Event::Joined { room, nick } if self.is_me(nick) => self.room = Some(room.to_string()),
            Event::NickChanged { old, new, .. } if self.is_me(old) => {
                self.nick = Some(new.to_string());
                self.chosen = Some(new.to_string());
            }
            // Earlier messages (`/history`) are older than where this client stands.
            Event::Message(message) if !message.older => {
                self.last_ids
                    .insert(message.room.to_string(), format!("{}:{}", message.epoch, message.message.seq));
            }
            Event::Replayed { room, recovered, last, .. } => {
                if let Some(last) = last {
                    self.last_ids.insert(room.to_string(), last.clone());
                }
                if std::mem::take(&mut self.resuming) && !recovered {
                    return Some(format!("some messages in {room} were missed while disconnected"));
                }
            }
            _ => {}
        }
        None
    }

    /// Whether `nicks` (a message's mentions) name this client.
    pub fn is_mentioned(&self, nicks: &[std::rc::Rc<str>]) -> bool {
        nicks.iter().any(|nick| self.is_me(nick))
    }

    /// The session expired: a newer token from `--token`'s file, if there is one.
    pub fn fresh_token(&mut self) -> Option<String> {
        let text = std::fs::read_to_string(self.token_file.as_ref()?).ok()?;
        let token = text.trim();
        if token.is_empty() || self.token.as_deref() == Some(token) {
            return None;
        }
        self.token = Some(token.to_string());
        self.token.clone()
    }

    /// Whether a private message is the sender's own copy.
    pub fn is_me(&self, nick: &str) -> bool {
        self.nick.as_deref() == Some(nick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        Event::from_json(json).unwrap()
    }

    #[test]
    fn reconnects_where_it_was_with_the_last_id_it_saw() {
        let mut resume = Resume::new(Some("bob".into()));
        assert_eq!(resume.url("ws://h:1/"), "ws://h:1/?nick=bob");
        resume.note(&event(r#"{"type":"welcome","nick":"bob","room":"lobby"}"#));
        resume
            .note(&event(r#"{"type":"replayed","room":"lobby","recovered":false,"count":0,"last":"ab:3"}"#));
        assert_eq!(resume.url("ws://h:1/"), "ws://h:1/?nick=bob&room=lobby&since=ab%3A3");
        resume.note(&event(r#"{"type":"nick","room":"lobby","old":"bob","new":"rob"}"#));
        resume.note(&event(r#"{"type":"joined","room":"Dev Ops","nick":"rob"}"#));
        resume.note(&event(r#"{"type":"joined","room":"lobby","nick":"someone"}"#));
        assert_eq!(resume.url("ws://h:1/"), "ws://h:1/?nick=rob&room=Dev%20Ops", "no id seen in Dev Ops yet");
        resume
            .note(&event(r#"{"type":"message","room":"Dev Ops","id":"cd:9","from":"x","text":"hi","ts":1}"#));
        assert_eq!(resume.url("ws://h:1/"), "ws://h:1/?nick=rob&room=Dev%20Ops&since=cd%3A9");
        // A page of earlier messages (`/history`) is not where the client stands.
        resume.note(&event(
            r#"{"type":"message","room":"Dev Ops","id":"cd:2","from":"x","text":"old","ts":1,"older":true}"#,
        ));
        assert_eq!(resume.url("ws://h:1/"), "ws://h:1/?nick=rob&room=Dev%20Ops&since=cd%3A9");
    }

    #[test]
    fn the_chosen_nick_is_asked_for_again_after_the_server_gave_a_guest_one() {
        let mut resume = Resume::new(Some("bob".into()));
        // Reconnected while the server still held the old connection's "bob".
        resume.note(&event(r#"{"type":"welcome","nick":"guest-7","room":"lobby"}"#));
        assert!(resume.url("ws://h:1/").starts_with("ws://h:1/?nick=bob&"));
        let mut guest = Resume::new(None);
        guest.note(&event(r#"{"type":"welcome","nick":"guest-7","room":"lobby"}"#));
        assert!(
            guest.url("ws://h:1/").starts_with("ws://h:1/?nick=guest-7&"),
            "a guest keeps its guest nick"
        );
    }

    #[test]
    fn a_token_goes_with_every_connection_and_is_never_shown() {
        let mut resume = Resume::new(Some("ignored".into()));
        resume.token = Some("aaa.bbb.ccc".into());
        let url = resume.url("ws://h:1/");
        assert_eq!(url, "ws://h:1/?token=aaa.bbb.ccc");
        assert_eq!(without_token(&url), "ws://h:1/?token=…");
        assert_eq!(without_token("ws://h:1/?token=x&room=dev"), "ws://h:1/?token=…&room=dev");
    }

    #[test]
    fn a_gap_is_reported_only_when_resuming() {
        let mut resume = Resume::new(None);
        let not_recovered =
            event(r#"{"type":"replayed","room":"lobby","recovered":false,"count":2,"last":"ab:3"}"#);
        resume.url("ws://h:1/");
        assert_eq!(resume.note(&not_recovered), None, "a first join has nothing to recover");
        resume.note(&event(r#"{"type":"welcome","nick":"guest-1","room":"lobby"}"#));
        resume.url("ws://h:1/");
        assert!(resume.note(&not_recovered).unwrap().contains("missed"));
        resume.url("ws://h:1/");
        let recovered =
            event(r#"{"type":"replayed","room":"lobby","recovered":true,"count":2,"last":"ab:5"}"#);
        assert_eq!(resume.note(&recovered), None);
    }
}
