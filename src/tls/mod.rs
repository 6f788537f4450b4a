//! TLS for the server's listener and the clients' `wss://` connections, with rustls (ring
//! provider), inside the same non-blocking loops: no thread, no runtime.
//!
//! - [`stream`]: [`TlsStream`], a rustls session over a mio socket that reads and writes like
//!   the socket itself, so the connection state machine, tungstenite and the outbox run over
//!   it unchanged: the clients' side.
//! - [`server_stream`]: [`ServerStream`], the same for the server's connections, over rustls's
//!   unbuffered API, with the loop's one receive buffer ([`shared`]) serving them all, so an
//!   idle connection holds no buffer; [`pieces`] are its parts, [`plain`] answers plain HTTP
//!   to the TLS port.
//! - [`server`]: the certificate and key from PEM files (`--tls-cert`, `--tls-key`), checked at
//!   start and re-read on SIGHUP.
//! - [`client`]: what `wschat-client` and `wschat-bench` trust: the public web roots, plus a
//!   private CA from `--ca-file`.

#[cfg(any(feature = "client", feature = "bench"))]
pub mod client;
pub mod pieces;
pub mod plain;
pub mod server;
pub mod server_stream;
pub mod shared;
pub mod stream;

pub use server::ServerTls;
pub use server_stream::ServerStream;
pub use stream::{TlsError, TlsStream};

/// The one application protocol spoken over TLS: HTTP/1.1, which carries the page and the
/// WebSocket upgrade alike.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider every TLS config uses: rustls's ring provider, with its default suites.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
