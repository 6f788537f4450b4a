//! The JSON forms of an [`Event`] (`docs/PROTOCOL.md`, "JSON mode"): the object a
//! `wschat.json` client receives ([`Event::json`]), and the same object read back
//! ([`Event::from_json`], what the terminal client does), field by field as PROTOCOL.md lists
//! them.

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::event::{Event, RoomMessage};
use super::history::{Kind, MessageId, Stored};

impl Event {
    /// The JSON object (see `docs/PROTOCOL.md`, "JSON mode").
    pub fn json(&self) -> Option<String> {
        let value = match self {
            Self::Message(RoomMessage { room, epoch, message: m, replay, older }) => {
                // Its own struct: the `type` depends on the message (chat line or action).
                let (kind, target) = match m.kind {
                    Kind::Line | Kind::Api => ("message", None),
                    Kind::Action => ("action", None),
                    Kind::Edit { target } => ("edited", Some(target)),
                    Kind::Delete { target } => ("deleted", Some(target)),
                };
                return serde_json::to_string(&JsonMessage {
                    kind,
                    room,
                    id: format!("{epoch}:{}", m.seq),
                    target: target.map(|seq| format!("{epoch}:{seq}")),
                    from: &m.from,
                    text: (!matches!(m.kind, Kind::Delete { .. })).then_some(&*m.text),
                    ts: m.ts,
                    edited: m.edited.then_some(true),
                    replay: replay.then_some(true),
                    older: older.then_some(true),
                    api: (m.kind == Kind::Api).then_some(true),
                    mentions: m.mentions.iter().map(|nick| &**nick).collect(),
                })
                .ok();
            }
            Self::Private { from, to, text, ts, api, .. } => {
                Json::Private { from, to, text, ts: *ts, api: api.then_some(true) }
            }
            Self::Notice(text) => Json::Notice { text },
            Self::Error(text) => Json::Error { text },
            Self::Welcome { nick, room } => Json::Welcome { nick, room },
            Self::Joined { room, nick } => Json::Joined { room, nick },
            Self::Left { room, nick, reason, moved_to } => {
                Json::Left { room, nick, reason: reason.as_deref(), moved_to: moved_to.as_deref() }
            }
            Self::NickChanged { room, old, new } => Json::Nick { room, old, new },
            Self::Who { room, count, nicks } => {
                Json::Who { room, count: *count, nicks: nicks.iter().map(|n| &**n).collect() }
            }
            Self::Rooms { count, rooms } => Json::Rooms {
                count: *count,
                rooms: rooms.iter().map(|(name, members)| JsonRoom { name, members: *members }).collect(),
            },
            Self::BinaryFrom { room, from, bytes } => Json::Binary { room, from, bytes: *bytes },
            Self::ReplayStart { .. } => return None,
            Self::Expired => Json::Expired {},
            Self::Typing { room, nick } => Json::Typing { room, nick },
            Self::EarlierStart { .. } => return None,
            Self::History { room, count, more, first } => {
                Json::History { room, count: *count, more: *more, first: first.as_deref() }
            }
            Self::Mention { room, id, from, text } => Json::Mention { room, id, from, text },
            Self::Replayed { room, recovered, count, last, read } => Json::Replayed {
                room,
                recovered: *recovered,
                count: *count,
                last: last.as_deref(),
                read: read.as_deref(),
            },
            Self::Read { room, id } => Json::Read { room, id },
        };
        // Serializing borrowed strings and integers cannot fail.
        serde_json::to_string(&value).ok()
    }

    /// Reads a JSON object back into its event (what a client in JSON mode does): the inverse
    /// of [`Event::json`], so a client shows exactly the text a text-mode client would get.
    /// None for anything else.
    pub fn from_json(text: &str) -> Option<Self> {
        let event = match serde_json::from_str::<JsonIn>(text).ok()? {
            JsonIn::Message(m) => {
                let kind = if m.api { Kind::Api } else { Kind::Line };
                Self::room_message(m, kind)?
            }
            JsonIn::Action(m) => Self::room_message(m, Kind::Action)?,
            JsonIn::Edited(m) => {
                let target = MessageId::parse(m.target.as_deref()?)?.seq;
                Self::room_message(m, Kind::Edit { target })?
            }
            JsonIn::Deleted(m) => {
                let target = MessageId::parse(m.target.as_deref()?)?.seq;
                Self::room_message(m, Kind::Delete { target })?
            }
            JsonIn::Private { from, to, text, ts, api } => {
                // Which copy this is, the client knows from its own nick; the receiver's by default.
                Self::Private { from: from.into(), to: to.into(), text, ts, outgoing: false, api }
            }
            JsonIn::Notice { text } => Self::Notice(text),
            JsonIn::Error { text } => Self::Error(text),
            JsonIn::Welcome { nick, room } => Self::Welcome { nick: nick.into(), room: room.into() },
            JsonIn::Joined { room, nick } => Self::Joined { room: room.into(), nick: nick.into() },
            JsonIn::Left { room, nick, reason, moved_to } => Self::Left {
                room: room.into(),
                nick: nick.into(),
                reason,
                moved_to: moved_to.map(Into::into),
            },
            JsonIn::Nick { room, old, new } => {
                Self::NickChanged { room: room.into(), old: old.into(), new: new.into() }
            }
            JsonIn::Who { room, count, nicks } => {
                Self::Who { room: room.into(), count, nicks: nicks.into_iter().map(Into::into).collect() }
            }
            JsonIn::Rooms { count, rooms } => {
                Self::Rooms { count, rooms: rooms.into_iter().map(|r| (r.name.into(), r.members)).collect() }
            }
            JsonIn::Binary { room, from, bytes } => {
                Self::BinaryFrom { room: room.into(), from: from.into(), bytes }
            }
            JsonIn::Replayed { room, recovered, count, last, read } => {
                Self::Replayed { room: room.into(), recovered, count, last, read }
            }
            JsonIn::Read { room, id } => Self::Read { room: room.into(), id },
            JsonIn::Expired {} => Self::Expired,
            JsonIn::Typing { room, nick } => Self::Typing { room: room.into(), nick: nick.into() },
            JsonIn::History { room, count, more, first } => {
                Self::History { room: room.into(), count, more, first }
            }
            JsonIn::Mention { room, id, from, text } => {
                Self::Mention { room: room.into(), id, from: from.into(), text }
            }
        };
        Some(event)
    }

    fn room_message(m: JsonInMessage, kind: Kind) -> Option<Self> {
        let id = MessageId::parse(&m.id)?;
        let mentions = m.mentions.into_iter().map(Rc::from).collect();
        let stored = Stored {
            author: 0,
            edited: m.edited,
            seq: id.seq,
            ts: m.ts,
            from: m.from.into(),
            text: m.text.into(),
            kind,
            mentions,
        };
        Some(Self::Message(RoomMessage {
            room: m.room.into(),
            epoch: id.epoch.into(),
            message: Rc::new(stored),
            replay: m.replay,
            older: m.older,
        }))
    }
}

/// The JSON forms as a client reads them.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum JsonIn {
    Message(JsonInMessage),
    Action(JsonInMessage),
    Edited(JsonInMessage),
    Deleted(JsonInMessage),
    Private {
        from: String,
        to: String,
        text: String,
        ts: u64,
        #[serde(default)]
        api: bool,
    },
    Notice {
        text: String,
    },
    Error {
        text: String,
    },
    Welcome {
        nick: String,
        room: String,
    },
    Joined {
        room: String,
        nick: String,
    },
    Left {
        room: String,
        nick: String,
        reason: Option<String>,
        moved_to: Option<String>,
    },
    Nick {
        room: String,
        old: String,
        new: String,
    },
    Who {
        room: String,
        count: usize,
        nicks: Vec<String>,
    },
    Rooms {
        count: usize,
        rooms: Vec<JsonInRoom>,
    },
    Binary {
        room: String,
        from: String,
        bytes: usize,
    },
    Replayed {
        room: String,
        recovered: bool,
        count: usize,
        last: Option<String>,
        #[serde(default)]
        read: Option<String>,
    },
    Expired {},
    Typing {
        room: String,
        nick: String,
    },
    Mention {
        room: String,
        id: String,
        from: String,
        text: String,
    },
    History {
        room: String,
        count: usize,
        more: bool,
        first: Option<String>,
    },
    Read {
        room: String,
        id: String,
    },
}

#[derive(Deserialize)]
struct JsonInMessage {
    room: String,
    id: String,
    #[serde(default)]
    target: Option<String>,
    from: String,
    #[serde(default)]
    text: String,
    ts: u64,
    #[serde(default)]
    edited: bool,
    #[serde(default)]
    replay: bool,
    #[serde(default)]
    older: bool,
    #[serde(default)]
    api: bool,
    #[serde(default)]
    mentions: Vec<String>,
}

#[derive(Deserialize)]
struct JsonInRoom {
    name: String,
    members: usize,
}

/// The JSON forms, field by field as PROTOCOL.md lists them.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Json<'a> {
    Private {
        from: &'a str,
        to: &'a str,
        text: &'a str,
        ts: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        api: Option<bool>,
    },
    Notice {
        text: &'a str,
    },
    Error {
        text: &'a str,
    },
    Welcome {
        nick: &'a str,
        room: &'a str,
    },
    Joined {
        room: &'a str,
        nick: &'a str,
    },
    Left {
        room: &'a str,
        nick: &'a str,
        reason: Option<&'a str>,
        moved_to: Option<&'a str>,
    },
    Nick {
        room: &'a str,
        old: &'a str,
        new: &'a str,
    },
    Who {
        room: &'a str,
        count: usize,
        nicks: Vec<&'a str>,
    },
    Rooms {
        count: usize,
        rooms: Vec<JsonRoom<'a>>,
    },
    Binary {
        room: &'a str,
        from: &'a str,
        bytes: usize,
    },
    Replayed {
        room: &'a str,
        recovered: bool,
        count: usize,
        last: Option<&'a str>,
        read: Option<&'a str>,
    },
    Expired {},
    Typing {
        room: &'a str,
        nick: &'a str,
    },
    Mention {
        room: &'a str,
        id: &'a str,
        from: &'a str,
        text: &'a str,
    },
    History {
        room: &'a str,
        count: usize,
        more: bool,
        first: Option<&'a str>,
    },
    Read {
        room: &'a str,
        id: &'a str,
    },
}

#[derive(Serialize)]
struct JsonMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    id: String,
    /// An edit's or a delete's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    from: &'a str,
    /// None for a delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    ts: u64,
    /// Its author changed it since.
    #[serde(skip_serializing_if = "Option::is_none")]
    edited: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    older: Option<bool>,
    /// An application's message (`POST /api/publish`), not a member's.
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<bool>,
    /// The members it names (`@NICK`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonRoom<'a> {
    name: &'a str,
    members: usize,
}
