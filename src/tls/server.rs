//! The server's certificate: loaded from PEM files at start (a missing, unreadable, empty or
//! mismatched file is an error naming the file) and loaded again on SIGHUP, so a renewed
//! certificate (ACME clients renew every 60 to 90 days) is served without a restart. A reload
//! that fails keeps the certificate in use.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{provider, ALPN_HTTP11};

/// The files the listener's certificate comes from, and the config built from them.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Reads and checks both files.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let config = build(cert_file, key_file)?;
        Ok(Self { cert_file: cert_file.to_path_buf(), key_file: key_file.to_path_buf(), config })
    }

    /// Reads both files again: the config for new connections, or why the files are unusable.
    pub fn reload(&self) -> Result<Arc<ServerConfig>, String> {
        build(&self.cert_file, &self.key_file)
    }

    /// The host for the page's URL on a server bound to `ip`: one the certificate covers, so
    /// the URL the log prints works (a certificate for `localhost` alone fails at
    /// `https://127.0.0.1/`). See [`url_host`].
    pub fn url_host(&self, ip: IpAddr) -> Option<String> {
        let chain = read_chain(&self.cert_file).ok()?;
        url_host(chain.first()?, ip)
    }
}

/// A host `leaf` covers for a server bound to `ip`: that address itself, else `localhost`
/// where the server listens on loopback (or on every address), else the first of its DNS
/// names (wildcards aside); None when it covers none of them.
pub fn url_host(leaf: &CertificateDer<'_>, ip: IpAddr) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let covers = |name: &ServerName| cert.verify_is_valid_for_subject_name(name).is_ok();
    let reachable = if ip.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { ip };
    if covers(&ServerName::IpAddress(reachable.into())) {
        return Some(reachable.to_string());
    }
    let localhost = ServerName::try_from("localhost").ok()?;
    if (reachable.is_loopback() || ip.is_unspecified()) && covers(&localhost) {
        return Some("localhost".into());
    }
    cert.valid_dns_names().find(|name| !name.starts_with('*')).map(str::to_string)
}

fn build(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = read_chain(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("--tls-key {}: no usable private key: {e}", key_file.display()))?;
    let provider = provider();
    // from_der checks that the key is the certificate's: a mismatch is caught here, at start,
    // not by every client's failed handshake.
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
        format!("--tls-key {} does not match --tls-cert {}: {e}", key_file.display(), cert_file.display())
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert {}: {e}", cert_file.display()))?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The certificate chain in `path`, leaf first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--tls-cert {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", path.display()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        rcgen::generate_simple_self_signed(names).unwrap().cert.der().clone()
    }

    #[test]
    fn the_url_names_a_host_the_certificate_covers() {
        let host = |names: &[&str], ip: &str| url_host(&leaf(names), ip.parse().unwrap());
        // The README's certificate before: localhost only, so not https://127.0.0.1/.
        assert_eq!(host(&["localhost"], "127.0.0.1").as_deref(), Some("localhost"));
        assert_eq!(host(&["localhost"], "0.0.0.0").as_deref(), Some("localhost"));
        assert_eq!(host(&["localhost", "127.0.0.1"], "127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host(&["chat.example.com"], "0.0.0.0").as_deref(), Some("chat.example.com"));
        assert_eq!(
            host(&["*.example.com", "chat.example.com"], "10.0.0.5").as_deref(),
            Some("chat.example.com")
        );
        assert_eq!(host(&["*.example.com"], "10.0.0.5"), None);
    }
}
