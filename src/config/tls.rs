//! A target's TLS trust and identity (`targets[].tls`): CA certificates added to the roots,
//! which built-in trust store, and a client certificate for mTLS. The files (and the system
//! store) are read and parsed here, where the config is checked, so `check` and the target's
//! HTTP client (`deliver::tls`) share one rule, as for signing secrets: what `check` accepts is
//! exactly what the client is built from, and each problem is named once with its key path.

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The built-in trust store a target's server certificate is verified against (besides
/// `tls.ca_file`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsRoots {
    /// The Mozilla roots compiled into the binary (webpki-roots): the same on every host.
    #[default]
    Webpki,
    /// The operating system's store, where corporate roots are installed (on Linux the CA
    /// bundle OpenSSL uses; `SSL_CERT_FILE` / `SSL_CERT_DIR` point elsewhere), read at start.
    System,
    /// The Mozilla roots and the system's.
    Both,
}

/// `targets[].tls`: whom the target's server certificate must be signed by, and the client
/// certificate it is shown (mTLS). Relative paths are relative to the config file's directory.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM bundle of CA certificates trusted besides `roots`, so an endpoint with a
    /// certificate from a private CA is reached with verification on (instead of
    /// `tls_insecure_skip_verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `"webpki"` (default), `"system"` or `"both"`: the built-in trust store, for endpoints
    /// whose certificates chain to roots only the host's store has (corporate CAs).
    #[serde(default)]
    pub roots: TlsRoots,
    /// mTLS: the PEM certificate chain (the client's certificate first) presented to a target
    /// that requires a client certificate; goes with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// mTLS: the PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// The certificate and key a target presents (mTLS), parsed and known to match.
pub struct ClientIdentity {
    /// The chain, the client's own certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// What a target's TLS settings come to: the HTTP client is built from this.
pub struct TlsMaterial {
    /// The trust anchors: `roots` and `ca_file`'s certificates (empty when verification is
    /// off: `tls_insecure_skip_verify`).
    pub roots: rustls::RootCertStore,
    /// The client certificate, if the target has one.
    pub identity: Option<ClientIdentity>,
}

/// Why a `targets[].tls` setting cannot be used (the key path goes with it, see
/// [`TlsConfig::load`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("must not be empty")]
    EmptyPath,
    #[error("cannot read {path}: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error("{path} is not PEM: {reason}")]
    NotPem { path: String, reason: String },
    #[error("{path} holds no certificate (found: {found})")]
    NoCertificate { path: String, found: String },
    #[error("{path} holds no private key (found: {found})")]
    NoPrivateKey { path: String, found: String },
    #[error("certificate {index} of {path} cannot be a trust anchor: {reason}")]
    BadCa {
        path: String,
        index: usize,
        reason: rustls::Error,
    },
    #[error("the first certificate of {path} cannot be used: {reason}")]
    BadCertificate { path: String, reason: rustls::Error },
    #[error("the private key in {path} cannot be used: {reason}")]
    BadKey { path: String, reason: rustls::Error },
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("set without {0} (a client certificate needs both files)")]
    Unpaired(&'static str),
    #[error("the system trust store holds no usable certificate{0}")]
    NoSystemRoots(String),
    #[error("has no effect with tls_insecure_skip_verify = true (no certificate is verified)")]
    Unverified,
}

/// Every problem of one target's `tls` table: (its key under `tls`, what is wrong).
pub type TlsProblems = Vec<(&'static str, TlsError)>;

impl TlsConfig {
    /// Reads and parses the files (and the system store when `roots` asks for it), with
    /// `verify` = not `tls_insecure_skip_verify`: the roots and client identity the target's
    /// client is built with, or every problem with its key under `tls.`.
    pub fn load(&self, verify: bool) -> Result<TlsMaterial, TlsProblems> {
        let mut problems = TlsProblems::new();
        let mut roots = rustls::RootCertStore::empty();
        if verify {
            self.add_roots(&mut roots, &mut problems);
        } else {
            if self.ca_file.is_some() {
                problems.push(("ca_file", TlsError::Unverified));
            }
            if self.roots != TlsRoots::Webpki {
                problems.push(("roots", TlsError::Unverified));
            }
        }
        let identity = match self.identity() {
            Ok(identity) => identity,
            Err(mut more) => {
                problems.append(&mut more);
                None
            }
        };
        if problems.is_empty() {
            Ok(TlsMaterial { roots, identity })
        } else {
            Err(problems)
        }
    }

    /// `roots`, then `ca_file`'s certificates.
    fn add_roots(&self, roots: &mut rustls::RootCertStore, problems: &mut TlsProblems) {
        if matches!(self.roots, TlsRoots::Webpki | TlsRoots::Both) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if matches!(self.roots, TlsRoots::System | TlsRoots::Both) {
            if let Err(e) = system_roots(roots, rustls_native_certs::load_native_certs()) {
                problems.push(("roots", e));
            }
        }
        if let Some(path) = &self.ca_file {
            let added = certificates(path).and_then(|certs| {
                for (index, cert) in certs.into_iter().enumerate() {
                    roots.add(cert).map_err(|reason| TlsError::BadCa {
                        path: path.display().to_string(),
                        index,
                        reason,
                    })?;
                }
                Ok(())
            });
            if let Err(e) = added {
                problems.push(("ca_file", e));
            }
        }
    }

    /// The client certificate and key (both files or neither), parsed and matched.
    fn identity(&self) -> Result<Option<ClientIdentity>, TlsProblems> {
        const CERT: &str = "client_cert_file";
        const KEY: &str = "client_key_file";
        let (cert_file, key_file) = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(vec![(CERT, TlsError::Unpaired(KEY))]),
            (None, Some(_)) => return Err(vec![(KEY, TlsError::Unpaired(CERT))]),
            (Some(cert), Some(key)) => (cert, key),
        };
        match (certificates(cert_file), private_key(key_file)) {
            (Ok(chain), Ok(key)) => match_key(chain, key, cert_file, key_file)
                .map(Some)
                .map_err(|problem| vec![problem]),
            (chain, key) => Err([(CERT, chain.err()), (KEY, key.err())]
                .into_iter()
                .filter_map(|(at, e)| Some((at, e?)))
                .collect()),
        }
    }
}

/// The system store's certificates added to `roots` (those rustls can use as anchors), or why
/// there are none: an empty store would refuse every server without saying why.
pub fn system_roots(
    roots: &mut rustls::RootCertStore,
    found: rustls_native_certs::CertificateResult,
) -> Result<(), TlsError> {
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added > 0 {
        return Ok(());
    }
    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    Err(TlsError::NoSystemRoots(if errors.is_empty() {
        " (none found; SSL_CERT_FILE or SSL_CERT_DIR can point at a CA bundle)".to_string()
    } else {
        format!(" ({})", errors.join("; "))
    }))
}

/// A file's PEM sections, or why it has none.
fn pem_sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let shown = || path.display().to_string();
    if path.as_os_str().is_empty() {
        return Err(TlsError::EmptyPath);
    }
    let bytes = std::fs::read(path).map_err(|error| TlsError::Unreadable {
        path: shown(),
        error,
    })?;
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            path: shown(),
            reason: e.to_string(),
        })?;
    if sections.is_empty() {
        return Err(TlsError::NotPem {
            path: shown(),
            reason: "no \"-----BEGIN ...-----\" section in it".into(),
        });
    }
    Ok(sections)
}

/// The names of the sections found, for a file that lacks the one wanted.
fn found(sections: &[(SectionKind, Vec<u8>)]) -> String {
    let names: Vec<&str> = sections
        .iter()
        .map(|(kind, _)| match kind {
            SectionKind::Certificate => "CERTIFICATE",
            SectionKind::PublicKey => "PUBLIC KEY",
            SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
            SectionKind::PrivateKey => "PRIVATE KEY",
            SectionKind::EcPrivateKey => "EC PRIVATE KEY",
            SectionKind::Crl => "X509 CRL",
            SectionKind::Csr => "CERTIFICATE REQUEST",
            _ => "another section",
        })
        .collect();
    names.join(", ")
}

/// The certificates of a PEM file, in order; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let sections = pem_sections(path)?;
    let certs: Vec<CertificateDer<'static>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
            found: found(&sections),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let sections = pem_sections(path)?;
    let shown = found(&sections);
    sections
        .into_iter()
        .find_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: path.display().to_string(),
            found: shown,
        })
}

/// The chain and key as an identity, if the key is one rustls can sign with and belongs to
/// the chain's first certificate; else the problem with its key under `tls`.
fn match_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<ClientIdentity, (&'static str, TlsError)> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|reason| {
            let path = key_file.display().to_string();
            ("client_key_file", TlsError::BadKey { path, reason })
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(ClientIdentity {
                chain: certified.cert,
                key,
            })
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err((
            "client_key_file",
            TlsError::KeyMismatch {
                cert: cert_file.display().to_string(),
                key: key_file.display().to_string(),
            },
        )),
        // The first certificate does not parse.
        Err(reason) => Err((
            "client_cert_file",
            TlsError::BadCertificate {
                path: cert_file.display().to_string(),
                reason,
            },
        )),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
