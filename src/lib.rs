//! wschat: a WebSocket chat server on one thread and one `mio` poll loop.
//!
//! The modules, one job each (each module's own docs say how):
//! - [`server`]: the loop: readiness in, the glue to the OS (registration, signals, SIGHUP
//!   reloads, shutdown); its parts are [`server::acceptor`] (the listener, its cap and back-off),
//!   [`server::hub`] (every connection, the chat, the routing between them), [`server::fanout`]
//!   (one frame queued to many, slow-reader verdicts) and [`server::timers`] (deadlines).
//! - [`connection`]: one client's state machine, generic over its stream: request head,
//!   upgrade, frames read with a per-turn budget, rate limit, closing, flushing.
//! - [`http`]: reads and judges each request head: upgrade, page, or error reply.
//! - [`health`]: the answer to `GET /healthz`, from a status the hub reads off its state.
//! - [`origin`]: which web pages may open a WebSocket.
//! - [`auth`]: signed connection tokens (JWT): the handshake's check and `/token`'s renewal.
//! - [`token`]: making such tokens, behind `wschat-token` (for trying sign-in, scripts, tests).
//! - [`rate`]: a connection's message rate limit (`--max-messages-per-sec`), a token bucket.
//! - [`outbox`]: a connection's outgoing queue of shared buffers, flushed with vectored writes.
//! - [`frame`]: encodes a server frame once, so one buffer goes into every recipient's outbox.
//! - [`deflate`]: permessage-deflate without context takeover: negotiated, each broadcast
//!   compressed once for all its recipients, compressed messages inflated on the way in.
//! - [`chat`]: nicks, rooms, history, and who receives what, with no IO at all; what crosses
//!   processes it asks of a broker, in its own vocabulary (`chat::broker`).
//! - [`broker`]: the broker seam: the trait the hub hands the chat's requests to, and the
//!   in-process broker (one process answers for all).
//! - [`store`]: durable history (`--data-dir`), committed before the turn's writes.
//! - [`cluster`]: the Redis broker (`--redis`): several processes made one chat through Redis.
//! - [`api`]: the HTTP API (`--api`): applications publish, moderate and ask, with a key.
//! - [`metrics`]: counts what operators watch and serves it on `--metrics ADDR` (Prometheus).
//! - [`logline`]: keeps what clients send out of the log's control: escaped, cut, rate-limited.
//! - [`config`]: every flag of the server, its default and its `--help` text.
//! - [`settings`]: what the flags become once checked, every value derived from them included.
//! - [`units`]: sizes and durations as people type them (`64KiB`, `10s`), for every flag and `/ban`.
//! - [`fdlimit`]: raises the open-file limit to what the connections need.
//! - [`tls`]: TLS in the loop: the rustls stream under a connection, the server's certificate
//!   (reloaded on SIGHUP) and what the clients trust.
//! - [`web`]: the browser page, embedded in the binary.
//! - [`sim`]: the hub and its connections over scripted in-memory sockets, for property tests
//!   and fuzzing; several of them over a simulated Redis make a simulated cluster.
//! - [`wire`]: the client's side of the wire (upgrade request, client frames, header parsing),
//!   shared by the bench, the simulation and the tests.
//! - [`server_url`]: the server address both clients take (`ws://`, `wss://`, `HOST:PORT`,
//!   `HOST`), their one parser.
//! - [`rng`]: the one small pseudo-random generator (jitter, masks), nothing secret.
//! - `scratch` (unit tests only): a test's directory, removed when the test ends.
//! - [`client`]: the terminal chat client behind `wschat-client` (feature `client`).
//! - [`bench`](mod@bench): the load generator behind `wschat-bench` (feature `bench`).

pub mod api;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod broker;
pub mod chat;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod fdlimit;
pub mod frame;
pub mod health;
pub mod http;
pub mod logline;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod rate;
pub mod rng;
#[cfg(test)]
mod scratch;
pub mod server;
#[cfg(any(feature = "client", feature = "bench"))]
pub mod server_url;
pub mod settings;
pub mod sim;
pub mod store;
pub mod tls;
pub mod token;
pub mod units;
pub mod web;
pub mod wire;

pub use config::Config;
pub use server::Server;
pub use settings::Settings;
