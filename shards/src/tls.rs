//! STARTTLS to the relay (`[delivery] relay_tls`): the rustls client
//! configuration built once at start, and a TLS session driven by hand over
//! a [`Socket`] (the sans-I/O SMTP client reads and writes plaintext; this
//! turns it into TLS records and back).
//!
//! | `relay_tls` | STARTTLS         | certificate                         | on failure            |
//! |-------------|------------------|-------------------------------------|-----------------------|
//! | `off`       | never            | -                                   | -                     |
//! | `may`       | when offered     | not checked                         | plaintext retry       |
//! | `encrypt`   | required         | not checked                         | deferred (4.7.x)      |
//! | `verify`    | required         | chain to the CA file, name matched  | deferred (4.7.x)      |
//!
//! With `may` and `encrypt` the handshake signatures are still checked (the
//! peer holds the key of the certificate it shows); only the certificate
//! itself is trusted blindly, as Postfix does at those levels.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mb_engine::config::{DeliveryConfig, RelayTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::io::Socket;

/// The system trust stores tried, in order, when `relay_tls_ca_file` is
/// not set (Debian/Ubuntu, Fedora/RHEL, Alpine/BSD).
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Bytes read from the socket at a time during the handshake.
const HANDSHAKE_READ_BYTES: usize = 16 * 1024;

/// The relay's TLS settings, shared by every shard.
#[derive(Debug)]
pub struct RelaySetup {
    /// `relay_tls` (never `Off` here).
    pub mode: RelayTls,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// What the certificate is checked against, for the log.
    pub trust: String,
}

/// The TLS settings for `[delivery]`: `None` with `relay_tls = "off"`. An
/// error names the key to fix (the CA file cannot be read or holds no
/// certificate, no system trust store).
pub fn relay_setup(cfg: &DeliveryConfig) -> Result<Option<Arc<RelaySetup>>> {
    if cfg.relay_tls == RelayTls::Off {
        return Ok(None);
    }
    // ring, not aws-lc-rs: no cmake or NASM in the build. rustls marks it
    // deprecated because it has no post-quantum key exchange (X25519,
    // P-256 and P-384 only), which is acceptable for a relay hop.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("delivery.relay_tls: no TLS protocol version available")?;
    let name_text = cfg
        .relay_tls_server_name
        .clone()
        .unwrap_or_else(|| cfg.relay.ip().to_string());
    let server_name = ServerName::try_from(name_text.clone()).with_context(|| {
        format!("delivery.relay_tls_server_name: `{name_text}` is not a valid TLS server name")
    })?;
    let (config, trust) = if cfg.relay_tls == RelayTls::Verify {
        let (roots, trust) = load_roots(cfg.relay_tls_ca_file.as_deref())?;
        let config = builder.with_root_certificates(roots).with_no_client_auth();
        (config, format!("{trust}, name {name_text}"))
    } else {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        (config, "certificate not checked".to_owned())
    };
    Ok(Some(Arc::new(RelaySetup {
        mode: cfg.relay_tls,
        config: Arc::new(config),
        server_name,
        trust,
    })))
}

/// The CA certificates of `file`, or of the first system trust store found.
fn load_roots(file: Option<&Path>) -> Result<(RootCertStore, String)> {
    let (path, key) = match file {
        Some(p) => (p.to_path_buf(), "delivery.relay_tls_ca_file"),
        None => {
            let Some(found) = SYSTEM_CA_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
            else {
                bail!(
                    "delivery.relay_tls: relay_tls = \"verify\" needs CA certificates and no \
                     system trust store was found (tried {}): set relay_tls_ca_file",
                    SYSTEM_CA_FILES.join(", ")
                );
            };
            (found, "delivery.relay_tls_ca_file (default)")
        }
    };
    let pem =
        std::fs::read(&path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let mut found = 0usize;
    for item in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            item.with_context(|| format!("{key}: {} is not a valid PEM file", path.display()))?;
        found += 1;
        // A certificate rustls cannot use is skipped (counted below).
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!(
            "{key}: {} holds no usable CA certificate ({found} PEM certificate(s) found): \
             write the CA certificates as `-----BEGIN CERTIFICATE-----` blocks",
            path.display()
        );
    }
    let trust = format!(
        "{} CA certificate(s) from {}{}",
        roots.len(),
        path.display(),
        if found > roots.len() {
            format!(" ({} unusable skipped)", found - roots.len())
        } else {
            String::new()
        }
    );
    Ok((roots, trust))
}

/// `may` and `encrypt`: any certificate, but the handshake signatures are
/// still verified with it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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

/// A TLS session on an established connection.
pub struct Session {
    conn: ClientConnection,
}

impl Session {
    /// Runs the handshake on `socket` (no timeout here: the caller's).
    /// The error is the reason for the log and the queue.
    pub async fn handshake(setup: &RelaySetup, socket: &Socket<'_>) -> Result<Session, String> {
        let mut conn = ClientConnection::new(Arc::clone(&setup.config), setup.server_name.clone())
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut wire = Vec::new();
        let mut buf = vec![0u8; HANDSHAKE_READ_BYTES];
        while conn.is_handshaking() {
            if conn.wants_write() {
                wire.clear();
                drain_tls(&mut conn, &mut wire);
                socket
                    .write_all(&wire)
                    .await
                    .map_err(|e| format!("TLS handshake: write: {e}"))?;
                continue;
            }
            let n = socket
                .read(&mut buf)
                .await
                .map_err(|e| format!("TLS handshake: read: {e}"))?;
            if n == 0 {
                return Err("TLS handshake: the relay closed the connection".into());
            }
            if let Err(e) = feed(&mut conn, &buf[..n], None) {
                // Tell the peer why (an alert), best effort.
                wire.clear();
                drain_tls(&mut conn, &mut wire);
                let _ = socket.write_all(&wire).await;
                return Err(format!("TLS handshake with the relay failed: {e}"));
            }
        }
        // The last flight (client Finished) may still be queued.
        if conn.wants_write() {
            wire.clear();
            drain_tls(&mut conn, &mut wire);
            socket
                .write_all(&wire)
                .await
                .map_err(|e| format!("TLS handshake: write: {e}"))?;
        }
        Ok(Session { conn })
    }

    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384` for the log.
    pub fn describe(&self) -> String {
        let version = self
            .conn
            .protocol_version()
            .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map_or_else(String::new, |s| format!(" {:?}", s.suite()));
        format!("{version}{suite}")
    }

    /// Encrypts `plain`, appending the records to `wire`.
    pub fn encrypt(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> Result<(), String> {
        self.conn
            .writer()
            .write_all(plain)
            .map_err(|e| format!("TLS write: {e}"))?;
        drain_tls(&mut self.conn, wire);
        Ok(())
    }

    /// Decrypts the records in `wire`, appending the plaintext to `plain`
    /// and what must be sent back (alerts, key updates) to `reply`. True
    /// when the relay closed the TLS session (close_notify).
    pub fn decrypt(
        &mut self,
        wire: &[u8],
        plain: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<bool, String> {
        let fed = feed(&mut self.conn, wire, Some(plain));
        drain_tls(&mut self.conn, reply);
        fed.map_err(|e| format!("TLS error from the relay: {e}"))
    }
}

/// Gives every byte of `wire` to rustls, processing records as they
/// complete and taking the plaintext out (so its buffer never fills); true
/// at the peer's close_notify.
fn feed(
    conn: &mut ClientConnection,
    mut wire: &[u8],
    mut plain: Option<&mut Vec<u8>>,
) -> Result<bool, String> {
    let mut closed = false;
    while !wire.is_empty() {
        conn.read_tls(&mut wire).map_err(|e| e.to_string())?;
        conn.process_new_packets().map_err(|e| e.to_string())?;
        let Some(plain) = plain.as_deref_mut() else {
            continue;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => plain.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(closed)
}

/// Appends every TLS record rustls has queued to `wire`.
fn drain_tls(conn: &mut ClientConnection, wire: &mut Vec<u8>) {
    while conn.wants_write() {
        if conn.write_tls(wire).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DeliveryConfig {
        let checked = mb_engine::config::parse(text);
        checked.config.expect("valid").delivery
    }

    fn error(cfg: &DeliveryConfig) -> String {
        format!("{:#}", relay_setup(cfg).expect_err("refused"))
    }

    #[test]
    fn off_has_no_tls_settings() {
        assert!(relay_setup(&config("")).unwrap().is_none());
    }

    #[test]
    fn may_and_encrypt_need_no_ca() {
        for mode in ["may", "encrypt"] {
            let cfg = config(&format!(
                "[delivery]\nrelay_tls = \"{mode}\"\nrelay_tls_ca_file = \"/nonexistent\"\n"
            ));
            let setup = relay_setup(&cfg).unwrap().expect("tls");
            assert_eq!(setup.mode.name(), mode);
            assert_eq!(setup.trust, "certificate not checked");
        }
    }

    #[test]
    fn ca_file_problems_name_the_key() {
        let dir = std::env::temp_dir().join(format!("mb-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let verify = |path: &Path| {
            config(&format!(
                "[delivery]\nrelay_tls = \"verify\"\nrelay_tls_server_name = \"relay.test\"\n\
                 relay_tls_ca_file = \"{}\"\n",
                path.display()
            ))
        };
        let missing = error(&verify(&dir.join("missing.pem")));
        assert!(
            missing.starts_with("delivery.relay_tls_ca_file: cannot read"),
            "{missing}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = error(&verify(&empty));
        assert!(
            e.starts_with("delivery.relay_tls_ca_file:") && e.contains("no usable CA"),
            "{e}"
        );
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = error(&verify(&broken));
        assert!(e.starts_with("delivery.relay_tls_ca_file:"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verify_defaults_to_the_system_store() {
        let cfg = config(
            "[delivery]\nrelay_tls = \"verify\"\nrelay_tls_server_name = \"relay.example.com\"\n",
        );
        match SYSTEM_CA_FILES.iter().find(|p| Path::new(p).is_file()) {
            Some(found) => {
                let setup = relay_setup(&cfg).unwrap().expect("tls");
                assert!(setup.trust.contains(found), "{}", setup.trust);
                assert!(
                    setup.trust.ends_with("name relay.example.com"),
                    "{}",
                    setup.trust
                );
            }
            None => assert!(error(&cfg).contains("no system trust store")),
        }
    }
}
