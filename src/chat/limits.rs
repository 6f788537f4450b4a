//! The chat's limits, from the server's settings, and their defaults.

/// The chat's limits (from the server's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Rooms larger than this get no join/leave/nick announcements (`--announce-limit`).
    pub announce_limit: usize,
    /// Messages kept per room (`--history`); 0 keeps none.
    pub history: usize,
    /// Empty rooms whose history is kept (`--history-rooms`); past it, the room emptied the
    /// longest ago is forgotten.
    pub history_rooms: usize,
    /// What all rooms' histories may cost together (`--history-memory`, see
    /// [`Stored::cost`]); past it, empty rooms are forgotten (emptied longest ago first), then
    /// the room being written to drops its oldest messages.
    pub history_bytes: usize,
    /// Most bytes of history one join replays (half of `--max-outbound`, so a replay never
    /// makes its reader look too slow); the newest messages that fit are sent.
    pub replay_bytes: usize,
    /// Nicks come from sign-in tokens (the server has JWT keys): a token's `sub` is its
    /// holder's nick, everyone else is a guest, and nobody chooses a nick.
    pub token_nicks: bool,
    /// How long after sending it a member may `/edit` a message, in milliseconds
    /// (`--edit-window`).
    pub edit_window_ms: u64,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            announce_limit: DEFAULT_ANNOUNCE_LIMIT,
            history: DEFAULT_HISTORY,
            history_rooms: DEFAULT_HISTORY_ROOMS,
            history_bytes: DEFAULT_HISTORY_BYTES,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            token_nicks: false,
            edit_window_ms: DEFAULT_EDIT_WINDOW_MS,
        }
    }
}

/// Default for [`ChatLimits::announce_limit`].
pub const DEFAULT_ANNOUNCE_LIMIT: usize = 100;
/// Default for [`ChatLimits::edit_window_ms`]: 15 minutes.
pub const DEFAULT_EDIT_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Default for [`ChatLimits::history`].
pub const DEFAULT_HISTORY: usize = 100;
/// Default for [`ChatLimits::history_rooms`].
pub const DEFAULT_HISTORY_ROOMS: usize = 1000;
/// Default for [`ChatLimits::history_bytes`]: 64 MiB.
pub const DEFAULT_HISTORY_BYTES: usize = 64 << 20;
/// Default for [`ChatLimits::replay_bytes`]: half the default `--max-outbound`.
pub const DEFAULT_REPLAY_BYTES: usize = 512 << 10;
