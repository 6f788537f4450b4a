//! `wschat-bench`: a load generator for WebSocket broadcast servers.
//!
//! It opens `--clients` connections (at most `--connect-concurrency` handshakes at once), then
//! `--senders` of them send `--size`-byte text messages for `--duration` after `--warmup`, either
//! at a fixed aggregate `--rate` or as fast as a per-sender `--window` of unacknowledged messages
//! allows (a sender's message is acknowledged when the sender receives it back, so window mode
//! needs a server that delivers to the sender too, as wschat and the reference peers do).
//! Every message carries a token (sender, sequence, send time) that receivers find anywhere in
//! a text frame, so the same run measures wschat (`NICK: ` prefix, or a JSON object with
//! `--json-mode`) and plain broadcast servers. With `--text-size` the rest of a message is
//! chat-like text rather than padding; with `--deflate` every connection offers
//! `permessage-deflate` and compressed messages are inflated before their token is read.
//!
//! Only messages sent after the warm-up and before the end count; after the end the bench waits
//! (bounded) for their deliveries, then reports deliveries, expected deliveries, losses,
//! deliveries per second, end-to-end latency percentiles, CPU per delivery ([`cpu`]) and bytes
//! received per delivery, on the wire and after inflating.
//!
//! Two other ways to run: [`shootout`] steps the client count up to the websocket-shootout
//! measure, and [`processes`] spreads one run over several processes, for more clients than
//! one process may open files.
//!
//! # How the files fit together
//!
//! The binary (`src/bin/wschat-bench.rs`) parses a [`BenchConfig`] and hands it to [`run()`],
//! [`processes::run`] or [`shootout::run`]. From the top down, each file uses only files
//! below it:
//!
//! - [`shootout`]: `--shootout`'s steps and their table, on the workers of [`mod@run`].
//! - [`mod@run`]: a timed run in one process: this thread spawns the workers, takes them through
//!   connect, warm-up, measured sending and drain, prints the progress lines, and makes the
//!   [`Report`]. A part of a `--processes` run is one of these.
//! - [`processes`]: `--processes`: the parent that starts the parts and merges their results
//!   into one [`Report`], and a part's side of their exchange.
//! - [`report`]: a timed run's outcome and how it is shown: summary, latency distribution,
//!   JSON; and the figures' text forms.
//! - [`config`]: the command line, its checks and what the run derives from it.
//! - [`worker`]: one thread's poll loop over its share of the connections.
//! - [`client`]: one connection: its stage, buffers, receive path and sending state.
//! - [`shared`]: what the threads share ([`Shared`](shared::Shared)) and what each worker is
//!   asked to do ([`Plan`](shared::Plan)).
//! - [`samples`]: a shootout step's samples, as the workers and the coordinator share them.
//! - [`handshake`] (the upgrade request's offers and the check of the answer), [`payload`]
//!   (inflating compressed messages, JSON mode's replays), [`text`] (chat-like lines) and
//!   [`socket`] (connecting, reading, IO errors): the parts of a connection's work that stand
//!   alone.
//! - [`wire`] (the token and frames in a read buffer) and [`cpu`] (CPU time) use no other file.

pub mod client;
pub mod config;
pub mod cpu;
pub mod handshake;
pub mod payload;
pub mod processes;
pub mod report;
pub mod run;
pub mod samples;
pub mod shared;
pub mod shootout;
pub mod socket;
pub mod text;
pub mod wire;
pub mod worker;

pub use config::{BenchConfig, Part, SourceAddrs};
pub use report::{duration_ns, thousands, Report};
pub use run::run;
