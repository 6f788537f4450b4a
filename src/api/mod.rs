//! The HTTP API (`--api ADDR --api-key-file FILE`, see docs/API.md): applications ask the chat
//! and act on it over plain HTTP with JSON bodies, on a listener of their own in the server's
//! poll.
//!
//! - `keys.rs`: the API keys, read from their file (again on SIGHUP), compared in constant
//!   time, never shown;
//! - `wire.rs`: a request read from bytes, a reply written as bytes, and their bounds;
//! - `fields.rs`: a request's JSON fields and query parameters, checked by the chat's rules;
//! - `idempotency.rs`: `Idempotency-Key`, a retried `POST` answered its first answer again;
//! - `route.rs`: what a request means (a reply at once, or a call for the chat) and how the
//!   chat's answer is put; no IO;
//! - `endpoint.rs`: the listener and its connections, their deadlines and evictions;
//! - `admin.rs`: the admin page's files (`GET /admin`), served without a key.
//!
//! The chat's side of it (what a call asks, what it is answered) is `crate::chat::api`, in the
//! chat's own vocabulary: the chat knows nothing of HTTP.

pub mod admin;
pub mod endpoint;
pub mod fields;
pub mod idempotency;
pub mod keys;
pub mod route;
pub mod wire;

pub use endpoint::{ApiEndpoint, MAX_CLIENTS};
pub use keys::ApiKeys;
