//! What the chat tells clients, before it is put in words: an [`Event`] is rendered once per
//! broadcast for each mode that has recipients, as a text line ([`ServerLine`], the forms of
//! `docs/PROTOCOL.md`) for plain clients, here, or as one JSON object for clients that chose
//! the `wschat.json` subprotocol (`event_json.rs`, which reads it back too). Every variant
//! is rendered by both, so the two modes cannot drift apart.

use std::rc::Rc;

use super::history::{Kind, Stored};
use super::line::ServerLine;

/// How a client receives the chat's text frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One line per frame, the forms of `ServerLine` (websocat, wscat).
    Text = 0,
    /// One JSON object per frame (`Sec-WebSocket-Protocol: wschat.json`).
    Json = 1,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Text, Mode::Json];
}

/// The subprotocol that selects [`Mode::Json`].
pub const JSON_SUBPROTOCOL: &str = "wschat.json";

/// A room message (chat line or action), live or replayed from history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMessage {
    /// The room's name as shown.
    pub room: Rc<str>,
    pub epoch: Rc<str>,
    pub message: Rc<Stored>,
    pub replay: bool,
    /// Sent for `/history`: older than what the client has.
    pub older: bool,
}

/// Something a client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(RoomMessage),
    /// A private message; `outgoing` is the sender's own copy; `api`: from an application
    /// (`POST /api/send`), `from` being the name it gave.
    Private {
        from: Rc<str>,
        to: Rc<str>,
        text: String,
        ts: u64,
        outgoing: bool,
        api: bool,
    },
    Notice(String),
    Error(String),
    /// A client's first line: who it is and where.
    Welcome {
        nick: Rc<str>,
        room: Rc<str>,
    },
    Joined {
        room: Rc<str>,
        nick: Rc<str>,
    },
    /// `moved_to`: it joined that room; `reason`: why it left the chat.
    Left {
        room: Rc<str>,
        nick: Rc<str>,
        reason: Option<String>,
        moved_to: Option<Rc<str>>,
    },
    NickChanged {
        room: Rc<str>,
        old: Rc<str>,
        new: Rc<str>,
    },
    /// The first [`MAX_LISTED`](super::MAX_LISTED) members of a room, sorted, and the count.
    Who {
        room: Rc<str>,
        count: usize,
        nicks: Vec<Rc<str>>,
    },
    Rooms {
        count: usize,
        rooms: Vec<(Rc<str>, usize)>,
    },
    /// The binary message that follows comes from `from`.
    BinaryFrom {
        room: Rc<str>,
        from: Rc<str>,
        bytes: usize,
    },
    /// Text mode only: the recent messages of `room` follow.
    ReplayStart {
        room: Rc<str>,
    },
    /// The replay is over: `count` messages, `recovered` if they continue the client's `since`;
    /// `read`: where the client's read marker in the room stands.
    Replayed {
        room: Rc<str>,
        recovered: bool,
        count: usize,
        last: Option<String>,
        read: Option<String>,
    },
    /// Another connection of the client's user marked `room` read up to `id` (JSON only).
    Read {
        room: Rc<str>,
        id: String,
    },
    /// The client's sign-in token expired: it has 30 s to send `/token NEWTOKEN`.
    Expired,
    /// Text mode only: the earlier messages of `room` (`/history`) follow.
    EarlierStart {
        room: Rc<str>,
    },
    /// `/history` is answered: `count` messages, `first` the oldest id sent, `more` whether
    /// older ones are kept.
    History {
        room: Rc<str>,
        count: usize,
        more: bool,
        first: Option<String>,
    },
    /// A message in another room (`room`) mentions the client.
    Mention {
        room: Rc<str>,
        id: String,
        from: Rc<str>,
        text: String,
    },
    /// `nick` is typing in `room` (JSON mode only: a text client is not told).
    Typing {
        room: Rc<str>,
        nick: Rc<str>,
    },
}

/// Who a line of `/help` is shown to: each client sees the commands that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpFor {
    Everyone,
    /// Where nicks are chosen: a server without sign-in keys (with keys, a nick is the token's).
    ChosenNicks,
    /// A client signed in with a token (on a server with keys; a guest has no session to renew).
    SignedIn,
    /// Moderators (`role: admin`).
    Moderators,
}

/// The `/help` notice's lines, one per command, and whom each is for.
pub const HELP: &[(HelpFor, &str)] = &[
    (HelpFor::Everyone, "commands:"),
    (HelpFor::ChosenNicks, "/nick NAME       change your nick (1-32 chars, no spaces)"),
    (HelpFor::Everyone, "/join ROOM       move to another room (created if new)"),
    (HelpFor::Everyone, "/rooms           list rooms and member counts"),
    (HelpFor::Everyone, "/who             list members of your room"),
    (HelpFor::Everyone, "/me ACTION       say an action: * NICK ACTION"),
    (HelpFor::Everyone, "/msg NICK TEXT   private message"),
    (HelpFor::Everyone, "/quit [REASON]   leave the chat"),
    (HelpFor::SignedIn, "/token JWT       renew your sign-in before it expires"),
    (HelpFor::Everyone, "/history ID [N]  N earlier messages of your room, before message ID"),
    (HelpFor::Everyone, "/read ID         mark your room read up to message ID"),
    (HelpFor::Everyone, "/edit ID TEXT    change a message you sent (for a while)"),
    (HelpFor::Everyone, "/delete ID       remove a message you sent"),
    (HelpFor::Everyone, "/typing          tell the room you are typing (shown by JSON clients)"),
    (HelpFor::Everyone, "/help            this list"),
    (HelpFor::Everyone, "//TEXT           send a line starting with '/'"),
    (HelpFor::Moderators, "moderators:"),
    (HelpFor::Moderators, "/kick NICK       close the user's connections (a reason may follow)"),
    (HelpFor::Moderators, "/ban NICK TIME   kick, and refuse the user for TIME: 10m, 2h, 1d"),
    (HelpFor::Moderators, "/unban NICK      lift the user's bans"),
    (HelpFor::Moderators, "/bans            list the bans in force"),
    (HelpFor::Moderators, "/delete ID       remove anyone's message"),
];

impl Event {
    pub fn notice(text: impl Into<String>) -> Self {
        Self::Notice(text.into())
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self::Error(text.into())
    }

    /// The frame's text in `mode`, or None if this mode is not told (a text-mode replay
    /// marker for JSON clients, an empty replay for text clients).
    pub fn render(&self, mode: Mode) -> Option<String> {
        match mode {
            Mode::Text => self.text(),
            Mode::Json => self.json(),
        }
    }

    /// The text line (see `ServerLine`).
    pub fn text(&self) -> Option<String> {
        let notice = |text: &str| Some(ServerLine::Notice(text).to_string());
        match self {
            Self::Message(RoomMessage { message: m, .. }) => Some(match m.kind {
                Kind::Line => ServerLine::Chat { nick: &m.from, text: &m.text }.to_string(),
                Kind::Action => ServerLine::Action { nick: &m.from, text: &m.text }.to_string(),
                Kind::Api => ServerLine::Api { from: &m.from, text: &m.text }.to_string(),
                Kind::Edit { .. } => {
                    ServerLine::Notice(&format!("{} edited a message: {}", m.from, m.text)).to_string()
                }
                Kind::Delete { .. } => {
                    ServerLine::Notice(&format!("{} deleted a message", m.from)).to_string()
                }
            }),
            Self::Private { from, text, api: true, .. } => {
                Some(ServerLine::PrivateFromApi { from, text }.to_string())
            }
            Self::Private { from, text, outgoing: false, .. } => {
                Some(ServerLine::PrivateFrom { nick: from, text }.to_string())
            }
            Self::Private { to, text, outgoing: true, .. } => {
                Some(ServerLine::PrivateTo { nick: to, text }.to_string())
            }
            Self::Notice(text) => notice(text),
            Self::Error(text) => Some(ServerLine::Error(text).to_string()),
            Self::Welcome { nick, room } => {
                notice(&format!("welcome, you are {nick} in {room}; type /help for commands"))
            }
            Self::Joined { room, nick } => notice(&format!("{nick} joined {room}")),
            Self::Left { room, nick, reason, moved_to } => notice(&match (moved_to, reason) {
                (Some(to), _) => format!("{nick} left {room} (joined {to})"),
                (None, Some(reason)) => format!("{nick} left {room} ({reason})"),
                (None, None) => format!("{nick} left {room}"),
            }),
            Self::NickChanged { old, new, .. } => notice(&format!("{old} is now known as {new}")),
            Self::Who { room, count, nicks } => {
                let names: Vec<&str> = nicks.iter().map(|n| &**n).collect();
                notice(&format!("in {room} ({count}): {}{}", names.join(", "), more(*count, nicks.len())))
            }
            Self::Rooms { count, rooms } => {
                let list: Vec<String> = rooms.iter().map(|(name, n)| format!("{name} ({n})")).collect();
                notice(&format!("rooms: {}{}", list.join(", "), more(*count, rooms.len())))
            }
            Self::BinaryFrom { from, bytes, .. } => {
                Some(ServerLine::BinaryFrom { nick: from, len: *bytes }.to_string())
            }
            Self::ReplayStart { room } => notice(&format!("recent messages in {room}:")),
            Self::Expired => notice("your session expired; send /token NEWTOKEN"),
            Self::Typing { .. } | Self::Read { .. } => None,
            Self::EarlierStart { room } => notice(&format!("earlier messages in {room}:")),
            Self::History { room, count: 0, .. } => notice(&format!("no earlier messages in {room}")),
            Self::History { .. } => notice("end of earlier messages"),
            Self::Mention { room, from, text, .. } => {
                notice(&format!("{from} mentioned you in {room}: {text}"))
            }
            Self::Replayed { count: 0, .. } => None,
            Self::Replayed { .. } => notice("end of recent messages"),
        }
    }
}

impl Event {
    /// The id `EPOCH:SEQ` of a room message.
    pub fn message_id(&self) -> Option<String> {
        match self {
            Self::Message(m) => Some(format!("{}:{}", m.epoch, m.message.seq)),
            _ => None,
        }
    }
}

/// ", and N more" for a list of `count` cut to `shown`.
fn more(count: usize, shown: usize) -> String {
    if count > shown {
        format!(", and {} more", count - shown)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(action: bool, replay: bool) -> Event {
        let kind = if action { Kind::Action } else { Kind::Line };
        let stored = Stored {
            author: 0,
            edited: false,
            seq: 42,
            ts: 1764000000123,
            from: Rc::from("alice"),
            text: "hi \"there\"".into(),
            kind,
            mentions: Box::new([]),
        };
        Event::Message(RoomMessage {
            room: Rc::from("dev"),
            epoch: Rc::from("k3f9"),
            message: Rc::new(stored),
            replay,
            older: false,
        })
    }

    #[test]
    fn a_message_in_both_modes() {
        assert_eq!(message(false, false).text().unwrap(), "alice: hi \"there\"");
        assert_eq!(message(true, false).text().unwrap(), "* alice hi \"there\"");
        assert_eq!(
            message(false, false).json().unwrap(),
            r#"{"type":"message","room":"dev","id":"k3f9:42","from":"alice","text":"hi \"there\"","ts":1764000000123}"#
        );
        assert_eq!(
            message(true, true).json().unwrap(),
            r#"{"type":"action","room":"dev","id":"k3f9:42","from":"alice","text":"hi \"there\"","ts":1764000000123,"replay":true}"#
        );
    }

    #[test]
    fn an_application_message_is_set_apart_in_both_modes() {
        let stored = Stored {
            author: 0,
            edited: false,
            seq: 7,
            ts: 9,
            from: Rc::from("deploybot"),
            text: "deploy done".into(),
            kind: Kind::Api,
            mentions: Box::new([]),
        };
        let event = Event::Message(RoomMessage {
            room: Rc::from("lobby"),
            epoch: Rc::from("k3f9"),
            message: Rc::new(stored),
            replay: false,
            older: false,
        });
        assert_eq!(event.text().unwrap(), "[deploybot] deploy done");
        let json = event.json().unwrap();
        assert_eq!(
            json,
            r#"{"type":"message","room":"lobby","id":"k3f9:7","from":"deploybot","text":"deploy done","ts":9,"api":true}"#
        );
        assert_eq!(Event::from_json(&json), Some(event));
    }

    #[test]
    fn the_other_forms_in_json() {
        let cases = [
            (
                Event::Private {
                    from: "a".into(),
                    to: "b".into(),
                    text: "psst".into(),
                    ts: 5,
                    outgoing: true,
                    api: false,
                },
                r#"{"type":"private","from":"a","to":"b","text":"psst","ts":5}"#,
            ),
            (Event::notice("hello"), r#"{"type":"notice","text":"hello"}"#),
            (Event::error("no"), r#"{"type":"error","text":"no"}"#),
            (
                Event::Welcome { nick: "a".into(), room: "lobby".into() },
                r#"{"type":"welcome","nick":"a","room":"lobby"}"#,
            ),
            (
                Event::Joined { room: "dev".into(), nick: "a".into() },
                r#"{"type":"joined","room":"dev","nick":"a"}"#,
            ),
            (
                Event::Left {
                    room: "dev".into(),
                    nick: "a".into(),
                    reason: None,
                    moved_to: Some("ops".into()),
                },
                r#"{"type":"left","room":"dev","nick":"a","reason":null,"moved_to":"ops"}"#,
            ),
            (
                Event::NickChanged { room: "dev".into(), old: "a".into(), new: "b".into() },
                r#"{"type":"nick","room":"dev","old":"a","new":"b"}"#,
            ),
            (
                Event::Who { room: "dev".into(), count: 3, nicks: vec!["a".into(), "b".into()] },
                r#"{"type":"who","room":"dev","count":3,"nicks":["a","b"]}"#,
            ),
            (
                Event::Rooms { count: 1, rooms: vec![("dev".into(), 2)] },
                r#"{"type":"rooms","count":1,"rooms":[{"name":"dev","members":2}]}"#,
            ),
            (
                Event::BinaryFrom { room: "dev".into(), from: "a".into(), bytes: 9 },
                r#"{"type":"binary","room":"dev","from":"a","bytes":9}"#,
            ),
            (
                Event::Replayed {
                    room: "dev".into(),
                    recovered: true,
                    count: 2,
                    last: Some("k3f9:42".into()),
                    read: Some("k3f9:40".into()),
                },
                r#"{"type":"replayed","room":"dev","recovered":true,"count":2,"last":"k3f9:42","read":"k3f9:40"}"#,
            ),
            (
                Event::Replayed { room: "dev".into(), recovered: false, count: 0, last: None, read: None },
                r#"{"type":"replayed","room":"dev","recovered":false,"count":0,"last":null,"read":null}"#,
            ),
        ];
        for (event, json) in cases {
            assert_eq!(event.json().unwrap(), json);
        }
        assert_eq!(Event::ReplayStart { room: "dev".into() }.json(), None);
    }

    #[test]
    fn every_json_form_reads_back_as_the_same_event() {
        let events = [
            message(false, false),
            message(true, true),
            Event::Private {
                from: "a".into(),
                to: "b".into(),
                text: "psst".into(),
                ts: 5,
                outgoing: false,
                api: false,
            },
            Event::Private {
                from: "deploybot".into(),
                to: "b".into(),
                text: "psst".into(),
                ts: 5,
                outgoing: false,
                api: true,
            },
            Event::notice("hello\nworld"),
            Event::error("no"),
            Event::Welcome { nick: "a".into(), room: "lobby".into() },
            Event::Joined { room: "dev".into(), nick: "a".into() },
            Event::Left { room: "dev".into(), nick: "a".into(), reason: Some("quit".into()), moved_to: None },
            Event::NickChanged { room: "dev".into(), old: "a".into(), new: "b".into() },
            Event::Who { room: "dev".into(), count: 3, nicks: vec!["a".into(), "b".into()] },
            Event::Rooms { count: 1, rooms: vec![("dev".into(), 2)] },
            Event::BinaryFrom { room: "dev".into(), from: "a".into(), bytes: 9 },
            Event::Replayed {
                room: "dev".into(),
                recovered: true,
                count: 2,
                last: Some("k3f9:42".into()),
                read: None,
            },
            Event::Read { room: "dev".into(), id: "k3f9:41".into() },
            Event::Typing { room: "dev".into(), nick: "a".into() },
            Event::History { room: "dev".into(), count: 2, more: true, first: Some("k3f9:40".into()) },
            Event::Mention {
                room: "dev".into(),
                id: "k3f9:41".into(),
                from: "a".into(),
                text: "@b hi".into(),
            },
        ];
        for event in events {
            let json = event.json().unwrap();
            assert_eq!(Event::from_json(&json).as_ref(), Some(&event), "{json}");
        }
        assert_eq!(message(false, false).message_id().as_deref(), Some("k3f9:42"));
        for junk in ["", "{}", r#"{"type":"nope"}"#, r#"{"type":"message","id":"bad"}"#, "alice: hi"] {
            assert_eq!(Event::from_json(junk), None, "{junk}");
        }
    }

    #[test]
    fn replay_markers_in_text_mode() {
        assert_eq!(Event::ReplayStart { room: "dev".into() }.text().unwrap(), "*** recent messages in dev:");
        let done = Event::Replayed { room: "dev".into(), recovered: true, count: 2, last: None, read: None };
        assert_eq!(done.text().unwrap(), "*** end of recent messages");
        let empty =
            Event::Replayed { room: "dev".into(), recovered: false, count: 0, last: None, read: None };
        assert_eq!(empty.text(), None, "no replay, no markers");
    }
}
