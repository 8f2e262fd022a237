//! Server identities: a certificate chain and key, loaded from PEM files or made on first
//! start as a development certificate that browsers can pin.
//!
//! Chromium accepts a self-signed certificate for WebTransport only through
//! `serverCertificateHashes`, and only if it is ECDSA P-256 and valid for at most 14 days
//! (W3C WebTransport §6.4). So the development certificate is made with exactly that shape,
//! kept in the data directory, and made anew when it nears expiry.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::digest::{digest, SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::key_file::{self, Existing, KeyFileError};

/// How long a development certificate is valid. Chromium refuses more than 14 days.
pub const DEV_CERT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// A development certificate with less than this left is made anew at start-up.
pub const DEV_CERT_RENEW_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);

const DEV_CERT_FILE: &str = "dev-cert.pem";
const DEV_KEY_FILE: &str = "dev-key.pem";
/// Holds the certificate's expiry (Unix seconds), so renewal needs no X.509 parser.
const DEV_EXPIRY_FILE: &str = "dev-cert.expires";

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("cannot use the private key: {0}")]
    UnsupportedKey(rustls::Error),
    #[error("cannot make a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

/// A certificate chain with its private key, and the leaf's SHA-256 fingerprint.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// Lower-case hex SHA-256 of the leaf certificate's DER: what browsers pin.
    pub fingerprint: String,
    /// When this identity must be replaced, for development certificates.
    pub expires: Option<SystemTime>,
}

impl ServerIdentity {
    /// Loads a PEM certificate chain and its PEM private key. A key file that group or
    /// others may read is refused ([`KeyFileError::NotPrivate`]).
    pub fn load_pem(cert: &Path, key: &Path) -> Result<Self, CertificateError> {
        let cert_pem = read(cert)?;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|source| CertificateError::Read {
                path: cert.to_path_buf(),
                source,
            })?;
        let leaf = chain
            .first()
            .ok_or_else(|| CertificateError::NoCertificate(cert.to_path_buf()))?;
        let fingerprint = fingerprint(leaf);
        let key_pem = key_file::read_private(key)?;
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|source| CertificateError::Read {
                path: key.to_path_buf(),
                source,
            })?
            .ok_or_else(|| CertificateError::NoKey(key.to_path_buf()))?;
        // Fail now rather than at the first handshake if the key type is unusable.
        rustls::crypto::ring::sign::any_supported_type(&key_der)
            .map_err(CertificateError::UnsupportedKey)?;
        Ok(Self {
            chain,
            key: Arc::new(key_der),
            fingerprint,
            expires: None,
        })
    }

    /// Loads the development certificate kept in `dir`, making a new one if there is
    /// none or it expires within [`DEV_CERT_RENEW_BEFORE`]. `dir` is made 0700 and the key
    /// is written 0600 atomically ([`key_file::write_secret`]).
    pub fn load_or_create_dev(dir: &Path, hostnames: &[String]) -> Result<Self, CertificateError> {
        let cert_path = dir.join(DEV_CERT_FILE);
        let key_path = dir.join(DEV_KEY_FILE);
        let expiry_path = dir.join(DEV_EXPIRY_FILE);
        let now = SystemTime::now();
        let stored_expiry = fs::read_to_string(&expiry_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        if let Some(expires) = stored_expiry {
            let fresh = expires
                .duration_since(now)
                .is_ok_and(|left| left > DEV_CERT_RENEW_BEFORE);
            if fresh && cert_path.exists() && key_path.exists() {
                let mut identity = Self::load_pem(&cert_path, &key_path)?;
                identity.expires = Some(expires);
                return Ok(identity);
            }
        }
        let (cert_pem, key_pem, expires) = generate_dev(hostnames, now)?;
        key_file::create_private_dir(dir)?;
        key_file::write_secret(&key_path, key_pem.as_bytes(), Existing::Replace)?;
        write(&cert_path, cert_pem.as_bytes())?;
        let expiry_secs = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
        write(&expiry_path, expiry_secs.as_secs().to_string().as_bytes())?;
        tracing::info!(path = %cert_path.display(), "made a new development certificate");
        let mut identity = Self::load_pem(&cert_path, &key_path)?;
        identity.expires = Some(expires);
        Ok(identity)
    }

    /// A secret derived from the private key, stable across restarts: the key of QUIC
    /// stateless resets, so a restarted node resets its previous connections at once and
    /// their peers reconnect instead of waiting for the idle timeout.
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&SHA256);
        context.update(b"stagecast stateless reset v1");
        context.update(self.key.secret_der());
        let mut secret = [0u8; 32];
        secret.copy_from_slice(context.finish().as_ref());
        secret
    }

    /// A rustls server configuration (TLS 1.3 only, as QUIC requires) offering `alpns`.
    pub fn server_config(&self, alpns: &[&[u8]]) -> Result<rustls::ServerConfig, CertificateError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        Ok(config)
    }
}

/// Lower-case hex SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(digest(&SHA256, cert.as_ref()))
}

/// Makes a self-signed ECDSA P-256 certificate valid from an hour ago for
/// [`DEV_CERT_VALIDITY`] in all (so at most 14 days), for `hostnames` plus loopback names.
fn generate_dev(
    hostnames: &[String],
    now: SystemTime,
) -> Result<(String, String, SystemTime), CertificateError> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in hostnames {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    let not_before = now - Duration::from_secs(3600);
    let expires = not_before + DEV_CERT_VALIDITY;
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(expires);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Stagecast development certificate",
    );
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem(), expires))
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &[u8]) -> Result<(), CertificateError> {
    fs::write(path, contents).map_err(|source| CertificateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stagecast-cert-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn dev_certificate_is_kept_and_reused() {
        let dir = temp_dir("reuse");
        let first = ServerIdentity::load_or_create_dev(&dir, &[]).unwrap();
        let second = ServerIdentity::load_or_create_dev(&dir, &[]).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 64);
        let left = first
            .expires
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left <= Duration::from_secs(14 * 24 * 3600));
        assert!(left > DEV_CERT_RENEW_BEFORE);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn dev_certificate_near_expiry_is_renewed() {
        let dir = temp_dir("renew");
        let first = ServerIdentity::load_or_create_dev(&dir, &[]).unwrap();
        let soon = SystemTime::now() + Duration::from_secs(3600);
        let soon = soon.duration_since(UNIX_EPOCH).unwrap().as_secs();
        fs::write(dir.join(DEV_EXPIRY_FILE), soon.to_string()).unwrap();
        let second = ServerIdentity::load_or_create_dev(&dir, &[]).unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
        fs::remove_dir_all(dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn dev_key_is_private_and_an_open_one_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = temp_dir("private").join("data");
        ServerIdentity::load_or_create_dev(&dir, &[]).unwrap();
        let key = dir.join(DEV_KEY_FILE);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ServerIdentity::load_or_create_dev(&dir, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", key.display())),
            "{text}"
        );
        let err = ServerIdentity::load_pem(&dir.join(DEV_CERT_FILE), &key).unwrap_err();
        assert!(
            matches!(
                err,
                CertificateError::KeyFile(KeyFileError::NotPrivate { .. })
            ),
            "{err}"
        );
        fs::remove_dir_all(dir.parent().unwrap()).ok();
    }

    #[test]
    fn missing_or_garbage_pem_is_a_clear_error() {
        let dir = temp_dir("garbage");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        fs::write(&cert, "not a certificate").unwrap();
        fs::write(&key, "not a key").unwrap();
        let err = ServerIdentity::load_pem(&cert, &key).unwrap_err();
        assert!(matches!(err, CertificateError::NoCertificate(_)), "{err}");
        let err = ServerIdentity::load_pem(&dir.join("absent.pem"), &key).unwrap_err();
        assert!(err.to_string().contains("absent.pem"), "{err}");
        fs::remove_dir_all(dir).ok();
    }
}
