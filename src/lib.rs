//! wschat: a WebSocket chat server on one thread and one `mio` poll loop.
//!
//! How the pieces fit:
//! - [`server`] owns the loop: readiness in, and the glue to the OS (registration, signals,
//!   shutdown). Its parts: [`server::acceptor`] (the listener, its cap and back-off),
//!   [`server::hub`] (every connection, the chat, and the routing between them),
//!   [`server::fanout`] (queuing one frame to many, slow-reader verdicts) and
//!   [`server::timers`] (deadlines).
//! - [`connection`] is one client's state machine, generic over its stream: request head,
//!   upgrade, frames read with a per-turn budget, rate limit, closing, flushing.
//! - [`outbox`] is a connection's outgoing queue; [`frame`] encodes a broadcast once, and the
//!   same buffer goes into every recipient's outbox.
//! - [`http`] reads and judges each request head: upgrade, page, or error reply.
//! - [`web`] is the browser page embedded in the binary; [`origin`] decides which web pages may
//!   connect.
//! - [`metrics`] counts what operators watch and serves it on `--metrics ADDR` (Prometheus).
//! - [`logline`] keeps what clients send out of the log's control: escaped, cut, rate-limited.
//! - [`chat`] holds nicks and rooms and decides who receives what, with no IO at all.
//! - [`config`] holds every flag and default; [`settings`] is what they become once checked.
//! - [`sim`] runs the hub and its connections over scripted in-memory sockets, for property
//!   tests and fuzzing.
//! - [`tls`] is TLS in the loop: the rustls stream under a connection, the server's certificate
//!   (reloaded on SIGHUP) and what the clients trust.
//! - [`rng`] is the one small pseudo-random generator (jitter, masks), nothing secret.
//! - [`wire`] is the client's side of the wire (upgrade request, client frames, header
//!   parsing), shared by the bench, the simulation and the tests.
//! - [`client`] is the terminal chat client behind `wschat-client` (feature `client`).
//! - [`bench`] is the load generator behind `wschat-bench` (feature `bench`).

pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod chat;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod fdlimit;
pub mod frame;
pub mod http;
pub mod logline;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod rate;
pub mod rng;
pub mod server;
pub mod settings;
pub mod sim;
pub mod store;
pub mod tls;
pub mod units;
pub mod web;
pub mod wire;

pub use config::Config;
pub use server::Server;
pub use settings::Settings;
