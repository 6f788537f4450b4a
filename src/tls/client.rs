//! The clients' side of TLS: what they trust for `wss://` (the public web roots from
//! `webpki-roots`, the Mozilla set, the same on every machine, and with `--ca-file` a private
//! CA's certificates), [`ClientStream`], the socket either plain or under TLS, and [`advice`],
//! what to tell a person whose `wss://` connection failed in a way they can mend.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, InvalidMessage, RootCertStore};

use super::{provider, TlsError, TlsStream, ALPN_HTTP11};

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

/// What to do about a TLS failure a person can mend, for `error` from a [`ClientStream`]:
/// rustls's own words name what failed (`received corrupt message of type
/// InvalidContentType`), not what to do. `None` for any other error.
pub fn advice(error: &io::Error) -> Option<String> {
    let TlsError(error) = error.get_ref()?.downcast_ref::<TlsError>()?;
    match error {
        // A plain HTTP answer (`HTTP/1.1 400 …`) where a TLS record should start.
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            Some("the server did not answer TLS; is it ws://?".to_string())
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some("certificate not trusted; pass --ca-file with your CA".to_string())
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let names: Vec<&str> = presented.iter().map(|name| plain_name(name)).collect();
            Some(format!(
                "the certificate is not for {}: it covers {}; connect by one of those names",
                expected.to_str(),
                if names.is_empty() { "no name".to_string() } else { names.join(", ") }
            ))
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            Some("the certificate is not for this server's name; connect by a name it covers".to_string())
        }
        _ => None,
    }
}

/// A name as rustls-webpki presents it (`DnsName("chat.example.com")`, `IpAddress(127.0.0.1)`),
/// as a person writes it.
fn plain_name(presented: &str) -> &str {
    let name = presented.strip_prefix("DnsName(").or_else(|| presented.strip_prefix("IpAddress("));
    name.and_then(|name| name.strip_suffix(')')).map_or(presented, |name| name.trim_matches('"'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_read_as_people_write_them() {
        assert_eq!(plain_name("DnsName(\"chat.example.com\")"), "chat.example.com");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }
}
