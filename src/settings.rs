//! The server's settings, checked once: [`Settings`] is what [`Config`] becomes after
//! validation, with everything derived from the flags built a single time: tungstenite's
//! [`WebSocketConfig`], the parsed [`OriginPolicy`], the loaded keys and certificate, and the
//! thresholds that follow from a limit (when a client stops being read, how much history a
//! join replays, when a quiet client is pinged). The server, its connections, the chat and the
//! in-memory simulation all read the same value, so no part re-parses a flag or re-derives a
//! threshold of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tungstenite::protocol::WebSocketConfig;

use crate::api::ApiKeys;
use crate::auth::{Auth, AuthFiles};
use crate::chat::ChatLimits;
use crate::config::Config;
use crate::origin::OriginPolicy;
use crate::tls::ServerTls;

/// Room kept in `--max-outbound` beyond one maximal message, for the frame header and the
/// `NICK: ` or `[PM from NICK] ` prefix the chat adds.
pub const OUTBOUND_SLACK: usize = 256;

/// Validated settings. Build them with [`Config::settings`] (or `Settings::try_from`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub backlog: u32,
    pub max_connections: usize,
    /// 0 is no limit.
    pub max_connections_per_ip: usize,
    pub max_message_size: usize,
    /// `--max-outbound`: most bytes queued for one client. A reader whose socket leaves more
    /// than this unsent is too slow and is cut off (1008); it is at least one message of the
    /// largest size plus [`OUTBOUND_SLACK`], so a single message never counts as a backlog.
    pub max_outbound: usize,
    /// Queued bytes past which a client is not read from until its queue drains: half of
    /// `--max-outbound`, so that what it still makes the server send meanwhile (pongs, close
    /// replies, its own messages echoed back) fits in the other half, and pausing, not the
    /// cut-off, is what a client that reads slowly meets first.
    pub read_pause_bytes: usize,
    /// How long a client may be silent before it is pinged: half of `--idle-timeout`, so a
    /// live client has the other half to answer before it is closed.
    pub ping_after: Duration,
    /// What the chat is allowed: `--announce-limit`, `--history`, `--history-rooms` and
    /// `--history-memory` as given; the replay budget derived from `--max-outbound` (see
    /// [`ChatLimits::replay_bytes`]: [`Self::read_pause_bytes`]); and whether nicks come from
    /// tokens (the server has JWT keys).
    pub chat: ChatLimits,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub close_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// `--max-messages-per-sec`; 0 is off.
    pub max_messages_per_sec: u32,
    /// `--deflate`: permessage-deflate is accepted from clients that offer it.
    pub deflate: bool,
    /// `--deflate-min-size`: shorter messages go uncompressed.
    pub deflate_min_size: usize,
    /// tungstenite's settings for every server connection.
    pub websocket: WebSocketConfig,
    /// Which web origins may open a WebSocket.
    pub origins: OriginPolicy,
    /// `--tls-cert` and `--tls-key`, loaded: the listener speaks TLS only.
    pub tls: Option<ServerTls>,
    /// `--jwt-secret` / `--jwt-public-key` (and the claims to check), loaded; replaced as a
    /// whole when SIGHUP reloads the keys.
    pub auth: Option<Arc<Auth>>,
    /// `--require-auth`: no valid token, no connection (401).
    pub require_auth: bool,
    /// `--metrics`: where the metrics listener binds.
    pub metrics: Option<SocketAddr>,
    /// `--api` and `--api-key-file`: where the HTTP API listens, and its keys as read at start.
    pub api: Option<(SocketAddr, ApiKeys)>,
    /// `--data-dir`: where history is kept durably.
    pub data_dir: Option<std::path::PathBuf>,
    /// With `data_dir`: messages kept per room on disk (`--retain`, never fewer than
    /// `--history`; none when history is off).
    pub retain: usize,
    /// `--redis`: the cluster this process is part of.
    pub redis: Option<crate::cluster::RedisUrl>,
    /// `--reuse-port`: share the listening address with other processes.
    pub reuse_port: bool,
    /// `--presence-ttl`: how long a silent process's members stay in the cluster's presence.
    pub presence_ttl: Duration,
    /// `--redis-linger`: how long a busy room's lone message may wait for company.
    pub redis_linger: Duration,
}

impl TryFrom<&Config> for Settings {
    type Error = String;

    /// Checks that the flags make sense together and builds what they describe.
    fn try_from(config: &Config) -> Result<Self, String> {
        check_limits(config)?;
        check_durations(config)?;
        let origins = OriginPolicy::new(&config.allowed_origins)?;
        let auth = load_auth(config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls::load(cert, key)?),
            _ => None,
        };
        let read_pause_bytes = config.max_outbound / 2;
        Ok(Self {
            addr: config.addr,
            backlog: config.backlog,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            max_message_size: config.max_message_size,
            max_outbound: config.max_outbound,
            read_pause_bytes,
            ping_after: config.idle_timeout / 2,
            chat: ChatLimits {
                announce_limit: config.announce_limit,
                history: config.history,
                history_rooms: config.history_rooms,
                history_bytes: config.history_memory,
                // A replay never fills more than the point where its reader stops being read,
                // so joining a room with a long history never looks like reading slowly.
                replay_bytes: read_pause_bytes,
                token_nicks: auth.is_some(),
                edit_window_ms: config.edit_window.as_millis().min(u128::from(u64::MAX)) as u64,
            },
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
            shutdown_timeout: config.shutdown_timeout,
            max_messages_per_sec: config.max_messages_per_sec,
            deflate: config.deflate,
            deflate_min_size: config.deflate_min_size,
            websocket: websocket_config(config),
            origins,
            tls,
            auth,
            require_auth: config.require_auth,
            metrics: config.metrics,
            api: match (config.api, &config.api_key_file) {
                (Some(addr), Some(file)) => Some((addr, ApiKeys::load(file)?)),
                _ => None,
            },
            data_dir: config.data_dir.clone(),
            retain: if config.history == 0 { 0 } else { config.retain.max(config.history) },
            redis: config.redis.clone(),
            reuse_port: config.reuse_port,
            presence_ttl: config.presence_ttl,
            redis_linger: config.redis_linger,
        })
    }
}

/// The most `--max-outbound` and `--max-message-size` may be.
const MAX_QUEUE_LIMIT: usize = 1 << 30;

/// The size and count limits: each possible, and `--max-outbound` room for the largest message.
fn check_limits(config: &Config) -> Result<(), String> {
    if config.backlog == 0 || config.backlog > i32::MAX as u32 {
        return Err("--backlog must be at least 1".into());
    }
    if config.max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    if config.max_message_size == 0 {
        return Err("--max-message-size must be at least 1 byte".into());
    }
    // A connection counts what it has queued in 32 bits (see `outbox.rs`): room for two of
    // the largest backlog, and a message of the largest size pushed past it.
    if config.max_outbound > MAX_QUEUE_LIMIT || config.max_message_size > MAX_QUEUE_LIMIT {
        return Err("--max-outbound and --max-message-size must be at most 1GiB".into());
    }
    if config.max_outbound < config.max_message_size.saturating_add(OUTBOUND_SLACK) {
        return Err(format!(
            "--max-outbound must be at least --max-message-size + {OUTBOUND_SLACK} bytes, \
             so that one message of the largest size always fits"
        ));
    }
    if !(64..=16 << 20).contains(&config.read_buffer_size) {
        return Err("--read-buffer-size must be between 64B and 16MiB".into());
    }
    if config.max_messages_per_sec > crate::rate::MAX_RATE {
        return Err(format!("--max-messages-per-sec must be at most {}", crate::rate::MAX_RATE));
    }
    Ok(())
}

/// The timeouts: long enough for the loop's timers to mean something.
fn check_durations(config: &Config) -> Result<(), String> {
    for (flag, value) in [
        ("--handshake-timeout", config.handshake_timeout),
        ("--idle-timeout", config.idle_timeout),
        ("--close-timeout", config.close_timeout),
    ] {
        if value < Duration::from_millis(10) {
            return Err(format!("{flag} must be at least 10ms"));
        }
        // A connection keeps its deadlines as 32-bit ticks (see `connection/clock.rs`).
        if value > crate::connection::clock::MAX_SPAN {
            return Err(format!("{flag} must be at most 24 days"));
        }
    }
    if config.presence_ttl < Duration::from_secs(1) {
        return Err("--presence-ttl must be at least 1s (heartbeats go every third of it)".into());
    }
    if config.redis_linger > crate::cluster::batch::MAX_LINGER {
        return Err("--redis-linger must be at most 1s (a lingering sender is held meanwhile)".into());
    }
    Ok(())
}

/// The JWT keys, loaded, if any were given; `--require-auth` needs one.
fn load_auth(config: &Config) -> Result<Option<Arc<Auth>>, String> {
    let files = AuthFiles {
        secret: config.jwt_secret.clone(),
        public_key: config.jwt_public_key.clone(),
        audience: config.jwt_audience.clone(),
        issuer: config.jwt_issuer.clone(),
    };
    match (&files.secret, &files.public_key) {
        (None, None) if config.require_auth => {
            Err("--require-auth needs a key to check tokens with: --jwt-secret or --jwt-public-key".into())
        }
        (None, None) => Ok(None),
        _ => Ok(Some(Arc::new(Auth::load(&files)?))),
    }
}

/// tungstenite's settings: our message limit applies to whole messages and to single frames,
/// and tungstenite never buffers writes (the outbox does).
fn websocket_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
}

/// The command line's way in: [`Config`] knows only the flags; turning them into
/// [`Settings`] is done here, where the checks are, so that the flags depend on nothing that
/// depends on them.
impl Config {
    /// Parses the process arguments and checks them, exiting with a usage message on error.
    pub fn from_args() -> (Self, Settings) {
        use clap::{CommandFactory, Parser};
        let config = Self::parse();
        match config.settings() {
            Ok(settings) => (config, settings),
            Err(message) => Self::command().error(clap::error::ErrorKind::ValueValidation, message).exit(),
        }
    }

    /// The validated settings these flags describe, or why they do not make sense together.
    pub fn settings(&self) -> Result<Settings, String> {
        Settings::try_from(self)
    }
}

impl Settings {
    /// The defaults, on the given address (for tests and embedding).
    pub fn with_addr(addr: SocketAddr) -> Self {
        Config::with_addr(addr).settings().expect("the defaults are valid")
    }

    /// Sockets the listener accepts at most: the clients, plus room to answer a burst of
    /// over-limit clients with 503.
    pub fn accept_cap(&self) -> usize {
        self.max_connections + 64 + self.max_connections / 16
    }

    /// Open files the server may need: every accepted socket, plus the metrics scrapes and what
    /// any process holds (see [`crate::fdlimit`]).
    pub fn open_files_wanted(&self) -> u64 {
        (self.accept_cap() + crate::metrics::slots::MAX_SCRAPES + crate::api::MAX_CLIENTS) as u64
            + crate::fdlimit::FILES_BESIDES_CONNECTIONS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::with_addr("127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        let settings = config().settings().unwrap();
        assert_eq!(settings.max_outbound, 1 << 20);
        assert_eq!(settings.websocket.max_message_size, Some(64 << 10));
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        let mut config = config();
        config.max_message_size = 4 << 20;
        assert!(config.settings().unwrap_err().contains("--max-outbound"));
        config.max_outbound = 8 << 20;
        assert!(config.settings().is_ok());
        config.max_connections = 0;
        assert!(config.settings().is_err());
    }

    #[test]
    fn derived_values_follow_their_flags() {
        let mut config = config();
        config.max_outbound = 100_000;
        config.idle_timeout = Duration::from_secs(30);
        let settings = config.settings().unwrap();
        assert_eq!(settings.read_pause_bytes, 50_000);
        assert_eq!(settings.chat.replay_bytes, settings.read_pause_bytes);
        assert_eq!(settings.ping_after, Duration::from_secs(15));
    }

    #[test]
    fn the_flags_defaults_are_the_chats() {
        // The chat keeps defaults of its own for when it runs without a server (its tests):
        // the flags must not drift from them.
        assert_eq!(config().settings().unwrap().chat, ChatLimits::default());
    }

    #[test]
    fn limits_a_connection_cannot_count_are_refused() {
        let mut config = config();
        config.idle_timeout = Duration::from_secs(25 * 86_400);
        assert_eq!(config.settings().unwrap_err(), "--idle-timeout must be at most 24 days");
        config.idle_timeout = Duration::from_secs(24 * 86_400);
        assert!(config.settings().is_ok());
        config.max_outbound = 2 << 30;
        assert!(config.settings().unwrap_err().contains("at most 1GiB"));
    }

    #[test]
    fn a_redis_linger_over_a_second_is_refused() {
        let mut config = config();
        config.redis_linger = Duration::from_millis(1001);
        assert!(config.settings().unwrap_err().contains("--redis-linger"));
        config.redis_linger = Duration::from_secs(1);
        assert!(config.settings().is_ok());
    }

    #[test]
    fn a_presence_ttl_under_a_second_is_refused() {
        let mut config = config();
        config.presence_ttl = Duration::from_millis(500);
        assert!(config.settings().unwrap_err().contains("--presence-ttl"));
    }

    #[test]
    fn bad_origins_are_refused() {
        let mut config = config();
        config.allowed_origins = vec!["chat.example.com".into()];
        assert!(config.settings().unwrap_err().contains("--allowed-origins"));
    }
}
