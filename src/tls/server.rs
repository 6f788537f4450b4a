//! The server's certificate: loaded from PEM files at start (a missing, unreadable, empty or
//! mismatched file is an error naming the file) and loaded again on SIGHUP, so a renewed
//! certificate (ACME clients renew every 60 to 90 days) is served without a restart. A reload
//! that fails keeps the certificate in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
