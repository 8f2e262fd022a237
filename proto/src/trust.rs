//! How a client decides to trust a server: the system's root certificates, or a pinned
//! SHA-256 fingerprint of the server's certificate (development certificates).

use std::sync::Arc;

use ring::digest::{digest, SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("fingerprint {0:?} is not 64 hex digits (SHA-256 of the certificate)")]
    BadFingerprint(String),
    #[error("no usable system root certificates: {0}")]
    NoRoots(String),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot fetch the server's certificate fingerprint from {0}")]
    Fetch(String),
}

/// Which servers a client trusts.
#[derive(Clone, Debug)]
pub enum ClientTrust {
    /// Certificates that chain to the system's roots and name the host.
    System,
    /// Exactly the certificates with these SHA-256 fingerprints.
    Pinned(Vec<[u8; 32]>),
}

impl ClientTrust {
    /// Parses a hex fingerprint as printed by the server (colons allowed).
    pub fn pinned_hex(hex_fingerprint: &str) -> Result<Self, TrustError> {
        Ok(Self::Pinned(vec![parse_fingerprint(hex_fingerprint)?]))
    }

    /// A rustls client configuration (TLS 1.3, ring) for this trust.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TrustError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let config = match self {
            ClientTrust::System => {
                let mut roots = rustls::RootCertStore::empty();
                let loaded = rustls_native_certs::load_native_certs();
                for cert in loaded.certs {
                    // A single unparsable system root is no reason to refuse the rest.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TrustError::NoRoots(format!("{:?}", loaded.errors)));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            ClientTrust::Pinned(fingerprints) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedFingerprint {
                    fingerprints: fingerprints.clone(),
                    provider,
                }))
                .with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The origin's default HTTP port, where `/certificate.sha256` is served.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// Longest fingerprint document accepted from a server.
const MAX_FINGERPRINT_BODY: u64 = 4096;

/// Chooses how to trust the server at `url`:
/// - `fingerprint` given: pin it;
/// - a loopback host: pin what the server's HTTP endpoint says its fingerprint is
///   (`cert_url`, else `http://HOST:8080/certificate.sha256`), which is how a development
///   certificate is trusted without copying its fingerprint by hand;
/// - otherwise: the system's roots.
pub async fn trust_for(
    url: &url::Url,
    fingerprint: Option<&str>,
    cert_url: Option<&url::Url>,
) -> Result<ClientTrust, TrustError> {
    if let Some(hex) = fingerprint {
        return ClientTrust::pinned_hex(hex);
    }
    if !is_loopback(url) {
        return Ok(ClientTrust::System);
    }
    let cert_url = match cert_url {
        Some(u) => u.clone(),
        None => {
            let host = url.host_str().unwrap_or("localhost");
            url::Url::parse(&format!(
                "http://{host}:{DEFAULT_HTTP_PORT}/certificate.sha256"
            ))
            .map_err(|e| TrustError::Fetch(e.to_string()))?
        }
    };
    let hex = fetch_fingerprint(&cert_url).await?;
    ClientTrust::pinned_hex(&hex)
}

/// The same trust for all of `urls` (relay upstream lists): pinned fingerprints of every
/// loopback upstream, or the system roots.
pub async fn trust_for_urls(urls: &[url::Url]) -> Result<ClientTrust, TrustError> {
    let mut pins = Vec::new();
    for url in urls {
        match trust_for(url, None, None).await? {
            ClientTrust::Pinned(p) => pins.extend(p),
            ClientTrust::System => return Ok(ClientTrust::System),
        }
    }
    Ok(ClientTrust::Pinned(pins))
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        // `moqt:` is not a special scheme to the URL standard, so its IP hosts arrive as
        // domains: parse them here.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// GETs a fingerprint document (64 hex digits) over plain HTTP.
pub async fn fetch_fingerprint(cert_url: &url::Url) -> Result<String, TrustError> {
    let target = cert_url.to_string();
    let fetched = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&target).call().map_err(|e| e.to_string())?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_FINGERPRINT_BODY)
            .read_to_string()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| TrustError::Fetch(e.to_string()))?
    .map_err(|e| TrustError::Fetch(format!("{cert_url}: {e} (pass --fingerprint HEX instead)")))?;
    let hex = fetched.trim().to_string();
    parse_fingerprint(&hex)?;
    Ok(hex)
}

/// Parses 64 hex digits, optionally separated by colons.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TrustError> {
    let cleaned: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).map_err(|_| TrustError::BadFingerprint(text.into()))?;
    bytes
        .try_into()
        .map_err(|_| TrustError::BadFingerprint(text.into()))
}

/// Trusts a certificate whose DER hashes to one of the pinned fingerprints, and still
/// checks that the handshake was signed by that certificate's key.
#[derive(Debug)]
struct PinnedFingerprint {
    fingerprints: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedFingerprint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hash = digest(&SHA256, end_entity.as_ref());
        if self.fingerprints.iter().any(|f| f == hash.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {} is not the pinned one",
                hex::encode(hash)
            )))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fingerprints_with_and_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn loopback_hosts_are_recognised_in_every_scheme() {
        for url in [
            "moqt://127.0.0.1:4443",
            "moqt://[::1]:4443",
            "moqt://localhost:4443",
            "https://127.0.0.1:4443",
            "https://[::1]:4443",
        ] {
            assert!(is_loopback(&url::Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "moqt://10.0.0.1:4443",
            "moqt://example.com",
            "https://192.168.1.1",
        ] {
            assert!(!is_loopback(&url::Url::parse(url).unwrap()), "{url}");
        }
    }
}
