//! The clients' side of TLS: what they trust for `wss://` (the public web roots from
//! `webpki-roots`, the Mozilla set, the same on every machine, and with `--ca-file` a private
//! CA's certificates), and [`ClientStream`], the socket either plain or under TLS.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::{provider, TlsStream, ALPN_HTTP11};

/// A client config trusting the public roots and the certificates in `ca_file`.
pub fn config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("--ca-file {}: no certificate in the file", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A client's socket (`wschat-client`, `wschat-bench`): plain for `ws://`, under TLS for
/// `wss://`. `flush` sends what TLS still holds.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<ClientConnection>>),
}

impl ClientStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => &tls.tcp,
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf),
            Self::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.write(buf),
            Self::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush(),
            Self::Tls(tls) => tls.flush(),
        }
    }
}

impl ClientStream {
    /// The stream for a new connection: under TLS to `name` when `tls` is given.
    pub fn new(tcp: TcpStream, tls: Option<&ClientTls>) -> io::Result<Self> {
        Ok(match tls {
            None => Self::Plain(tcp),
            Some(tls) => {
                let session =
                    ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(io::Error::other)?;
                Self::Tls(Box::new(TlsStream::new(tcp, session)))
            }
        })
    }
}

/// What a `wss://` connection needs: the trust config and the server's name.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl ClientTls {
    /// For a server named `host` (a DNS name or an IP address).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} cannot be a TLS server name: {e}"))?;
        Ok(Self { config, name })
    }
}

impl ClientStream {
    fn source_mut(&mut self) -> &mut dyn Source {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.as_mut(),
        }
    }
}

impl Source for ClientStream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.source_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.source_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.source_mut().deregister(registry)
    }
}
