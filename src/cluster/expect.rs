//! What the broker waits for from Redis: the answer each command on the command link awaits
//! ([`Expect`], in the order sent, since Redis answers a connection's commands in order), and
//! the Lua scripts those commands run ([`Scripts`]).

use std::rc::Rc;

use super::{presence, room};
use crate::broker::{Asker, Direct, Origin, Request};
use crate::chat::{ClientId, Stored};

/// What a reply on the command link answers, in the order the commands were sent.
#[derive(Debug)]
pub(super) enum Expect {
    /// Setup and publishes: only an error matters.
    Nothing,
    /// `COMMAND INFO SPUBLISH`: whether sharded pub/sub exists (Redis 7).
    Capability,
    Loaded {
        room: Rc<str>,
        display: Rc<str>,
    },
    /// A guest number (`INCR`), for the guest nick of a claim.
    GuestNumber {
        client: ClientId,
        serial: u64,
    },
    Claimed {
        client: ClientId,
        nick: Rc<str>,
        serial: u64,
    },
    Who {
        asker: Asker,
        room: Rc<str>,
    },
    Rooms {
        asker: Asker,
    },
    Reached {
        asker: Asker,
        nick: Rc<str>,
        direct: Direct,
    },
    /// A periodic heartbeat: 0 back means this process had already expired.
    Heartbeat,
    /// Every ban in force, at connect.
    Bans,
    /// A batch of a room's messages (`batch.rs`), numbered from the one Redis answers: if the
    /// link fails before Redis answers, they go back to the chat; an application's is answered
    /// with the id Redis gave it.
    Said {
        room: Rc<str>,
        said: Vec<(Stored, Origin)>,
    },
    /// Which of these nicks are held, for the names a message mentions.
    Holders {
        asker: Asker,
        nicks: Vec<Rc<str>>,
    },
    /// A room's history, for an application (`wanted`: as asked, to ask again).
    History {
        asker: Asker,
        room: Rc<str>,
        wanted: usize,
    },
}

impl Expect {
    /// The request to answer here, as the in-process broker would, when Redis never answered
    /// this (the link failed): every question gets its one answer.
    pub(super) fn unanswered(self) -> Option<Request> {
        Some(match self {
            Expect::GuestNumber { client, serial } => {
                Request::Claim { client, nick: None, signed: false, serial }
            }
            Expect::Claimed { client, nick, serial } => {
                Request::Claim { client, nick: Some(nick), signed: false, serial }
            }
            Expect::Who { asker, room } => Request::Who { asker, room },
            Expect::Rooms { asker } => Request::Rooms { asker },
            Expect::Reached { asker, nick, direct } => Request::Direct { asker, nick, direct },
            Expect::History { asker, room, wanted } => Request::History { asker, room, wanted },
            Expect::Holders { asker, nicks } => Request::Holders { asker, nicks },
            // Said again on this process alone (see `Notice::Unsent`), by the broker itself.
            Expect::Said { .. }
            | Expect::Nothing
            | Expect::Capability
            | Expect::Loaded { .. }
            | Expect::Heartbeat
            | Expect::Bans => return None,
        })
    }
}

/// A Lua script and its SHA-1 (its name for EVALSHA).
pub(super) struct Script {
    text: String,
    pub(super) sha: String,
}

impl Script {
    fn new(text: String) -> Self {
        Self { sha: room::script_sha(&text), text }
    }
}

/// Every script the broker runs, loaded on each connect.
pub(super) struct Scripts {
    pub(super) say: Script,
    pub(super) load: Script,
    pub(super) heartbeat: Script,
    pub(super) claim: Script,
    pub(super) live: Script,
    pub(super) direct: Script,
    pub(super) history: Script,
    pub(super) holders: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            say: Script::new(room::say_script()),
            load: Script::new(room::load_script()),
            heartbeat: Script::new(presence::heartbeat_script()),
            claim: Script::new(presence::claim_script()),
            live: Script::new(presence::live_entries_script()),
            direct: Script::new(presence::direct_script()),
            history: Script::new(room::history_script()),
            holders: Script::new(presence::holders_script()),
        }
    }

    pub(super) fn texts(&self) -> Vec<String> {
        [
            &self.say,
            &self.load,
            &self.heartbeat,
            &self.claim,
            &self.live,
            &self.direct,
            &self.history,
            &self.holders,
        ]
        .map(|script| script.text.clone())
        .to_vec()
    }
}
