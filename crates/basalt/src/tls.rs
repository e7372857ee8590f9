//! HTTPS for `basalt serve`: rustls (ring), HTTP/1.1 and HTTP/2 by ALPN.
//!
//! The certificate comes from PEM files (`--tls-cert`, `--tls-key`) or, with
//! `--tls self-signed`, from `<data dir>/tls/`, created there on first start (rcgen;
//! names `localhost`, `127.0.0.1`, `::1` and the listen addresses) and kept, so
//! clients can trust it once (`AWS_CA_BUNDLE`, boto3's `verify=`, `SSL_CERT_FILE`).
//! botocore sends Bedrock API keys (bearer tokens) only over `https://`; this is what
//! lets boto3 use them against Basalt without a proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A certificate chain and its private key, PEM.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate kept in this directory (made when missing).
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// A TLS acceptor and the certificate file it serves (for the start-up message).
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub cert_path: PathBuf,
}

/// Loads (or, for `SelfSigned`, makes once) the certificate and builds the acceptor.
pub fn load(source: &TlsSource) -> Result<Tls> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned { dir, names } => self_signed(dir, names)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read the certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .with_context(|| {
        format!(
            "the key {} does not match the certificate {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_path,
    })
}

/// The self-signed certificate and key in `dir`, made when either is missing.
fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut subject_alt_names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for name in names {
        if !subject_alt_names.contains(name) {
            subject_alt_names.push(name.clone());
        }
    }
    let made = rcgen::generate_simple_self_signed(subject_alt_names)
        .context("cannot make a self-signed certificate")?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    Ok((cert, key))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile_dir();
        let source = TlsSource::SelfSigned {
            dir: dir.clone(),
            names: vec!["basalt.internal".into()],
        };
        let first = load(&source).expect("made");
        let pem = std::fs::read(&first.cert_path).expect("written");
        let second = load(&source).expect("reloaded");
        assert_eq!(std::fs::read(&second.cert_path).expect("kept"), pem);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_key_that_is_not_pem_is_a_clear_error() {
        let dir = tempfile_dir();
        let source = TlsSource::SelfSigned {
            dir: dir.clone(),
            names: vec![],
        };
        let made = load(&source).expect("made");
        let bad_key = dir.join("bad.pem");
        std::fs::write(&bad_key, "not a key").expect("write");
        let err = load(&TlsSource::Files {
            cert: made.cert_path,
            key: bad_key,
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("not a PEM private key"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "basalt-tls-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
