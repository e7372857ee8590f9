//! How Basalt connects to PostgreSQL: a libpq connection string (URL or key-value
//! form) with libpq's TLS parameters, over rustls.
//!
//! `tokio-postgres` reads `sslmode` as `disable`, `prefer` or `require` only and knows
//! no certificates, so the TLS parameters are taken out of the string here and become
//! a rustls client configuration:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default, as in libpq) | when the server offers it | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `require` | always | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and issued for the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating
//! system's. `sslcert` and `sslkey` (PEM) give a client certificate for servers that
//! authenticate by certificate. As in libpq, a connection over a Unix socket never uses
//! TLS. An unchecked certificate still has to sign the handshake (the connection is
//! encrypted to whoever holds its key), which is what libpq's `require` gives.

use std::path::Path;
use std::sync::Arc;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

/// A parsed connection string and the TLS it asks for.
#[derive(Clone)]
pub struct PgConnect {
    config: postgres::Config,
    mode: TlsMode,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnect")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The TLS parameters of a connection string.
#[derive(Debug, Default, PartialEq)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParams {
    /// Takes `key`'s value when it is one of the TLS parameters.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

impl PgConnect {
    /// Parses a libpq connection string. Errors name the parameter or file at fault.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, params) = split_tls_params(url)?;
        let mut config: postgres::Config = rest
            .parse()
            .map_err(|e: postgres::Error| format!("not a PostgreSQL connection string: {e}"))?;
        let mode = match &params.mode {
            Some(m) => TlsMode::parse(m)?,
            None => TlsMode::Prefer,
        };
        let only_sockets = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)));
        let tls = if mode == TlsMode::Disable || only_sockets {
            config.ssl_mode(SslMode::Disable);
            None
        } else {
            config.ssl_mode(if mode == TlsMode::Prefer {
                SslMode::Prefer
            } else {
                SslMode::Require
            });
            Some(MakeRustlsConnect::new(client_config(mode, &params)?))
        };
        Ok(Self { config, mode, tls })
    }

    /// The parsed settings, to change what the string did not say (database, user).
    pub fn config_mut(&mut self) -> &mut postgres::Config {
        &mut self.config
    }

    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Opens a connection (blocking; not on a thread inside a tokio runtime).
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }
}

/// The string without its TLS parameters, and those parameters.
fn split_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !params.take(key, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, params));
    }
    // Key-value form: `key=value` pairs separated by spaces; a value may be quoted
    // with single quotes, in which `\'` and `\\` stand for themselves.
    let mut kept = Vec::new();
    let chars: Vec<char> = trimmed.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            return Err(format!("{key:?} in the connection string has no value"));
        }
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("the value of {key:?} has no closing quote")),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if i + 1 < chars.len() => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                value.push(chars[i]);
                i += 1;
            }
        }
        if !params.take(&key, value) {
            kept.push(chars[start..i].iter().collect::<String>());
        }
    }
    Ok((kept.join(" "), params))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{text:?} has a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: TlsMode, params: &TlsParams) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let roots = match params.root_cert.as_deref() {
        Some(path) => Some(root_store(path)?),
        None if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) => {
            return Err(format!(
                "sslmode={} needs sslrootcert (a PEM file of CA certificates, or \"system\")",
                if mode == TlsMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ))
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(Unchecked(Arc::clone(&provider))),
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == TlsMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&params.cert, &params.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert {cert}: {e}"))?;
            if chain.is_empty() {
                return Err(format!("sslcert {cert}: no certificate in the file"));
            }
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        (Some(_), None) => Err("sslcert needs sslkey".into()),
        (None, Some(_)) => Err("sslkey needs sslcert".into()),
    }
}

fn root_store(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err("sslrootcert=system: the system has no CA certificates".into());
        }
        return Ok(roots);
    }
    if !Path::new(path).is_file() {
        return Err(format!("sslrootcert {path}: no such file"));
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {path}: no CA certificate in the file"));
    }
    Ok(roots)
}

/// `require` / `prefer` without `sslrootcert`: any certificate, but the handshake must
/// be signed by its key.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_form() {
        let (rest, p) = split_tls_params(
            "postgres://u:p@db.example:5432/basalt?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("parses");
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5432/basalt?application_name=x"
        );
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, p) = split_tls_params("postgresql://h/db?sslmode=require").expect("parses");
        assert_eq!(
            (rest.as_str(), p.mode.as_deref()),
            ("postgresql://h/db", Some("require"))
        );
        assert!(split_tls_params("postgres://h/db?sslrootcert=%zz").is_err());
    }

    #[test]
    fn tls_parameters_leave_the_key_value_form() {
        let (rest, p) = split_tls_params(
            "host=db.example dbname = basalt sslmode=verify-ca sslrootcert='/etc/my ca\\'s.pem' password='a b'",
        )
        .expect("parses");
        assert_eq!(rest, "host=db.example dbname = basalt password='a b'");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/my ca's.pem"));
        assert!(split_tls_params("host=x sslmode").is_err());
        assert!(split_tls_params("host=x sslrootcert='open").is_err());
    }

    #[test]
    fn modes_and_their_needs_are_checked() {
        let err = PgConnect::parse("postgres://h/db?sslmode=verify-full").expect_err("no root");
        assert!(err.contains("needs sslrootcert"), "{err}");
        let err = PgConnect::parse("postgres://h/db?sslmode=always").expect_err("bad mode");
        assert!(err.contains("is not one of"), "{err}");
        let err = PgConnect::parse("postgres://h/db?sslmode=require&sslrootcert=/nonexistent")
            .expect_err("missing file");
        assert!(err.contains("/nonexistent"), "{err}");
        let err = PgConnect::parse("postgres://h/db?sslcert=/c.pem").expect_err("no key");
        assert!(err.contains("sslcert needs sslkey"), "{err}");
        assert_eq!(
            PgConnect::parse("postgres://h/db").expect("parses").mode(),
            TlsMode::Prefer,
            "libpq's default"
        );
        // A Unix socket never uses TLS, whatever the mode.
        let socket = PgConnect::parse("postgresql://postgres:@/postgres?host=/tmp&sslmode=require")
            .expect("parses");
        assert!(socket.tls.is_none());
        assert_eq!(socket.config().get_ssl_mode(), SslMode::Disable);
    }
}
