//! wschat: a WebSocket chat server on one thread and one `mio` poll loop.
//!
//! How the pieces fit:
//! - [`server`] owns the loop: accepting, reading until `WouldBlock`, timers, flushing, shutdown.
//! - [`connection`] is one client's state; its [`connection::Transport`] is the stream
//!   tungstenite reads from and whose writes land in the client's [`outbox::Outbox`].
//! - [`frame`] encodes a broadcast once; the same buffer goes into every recipient's outbox.
//! - [`http`] reads and judges each request head: upgrade, page, or error reply.
//! - [`web`] is the browser page embedded in the binary; [`origin`] decides which web pages may
//!   connect.
//! - [`chat`] holds nicks and rooms and decides who receives what, with no IO at all.
//! - [`config`] holds every flag, default and limit.
//! - [`client`] is the terminal chat client behind `wschat-client`.
//! - [`bench`] is the load generator behind `wschat-bench`.

pub mod bench;
pub mod chat;
pub mod client;
pub mod config;
pub mod connection;
pub mod frame;
pub mod http;
pub mod memory;
pub mod origin;
pub mod outbox;
pub mod rate;
pub mod server;
pub mod web;

pub use config::Config;
pub use server::Server;
