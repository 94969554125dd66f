//! A target's rustls client configuration: the roots its server certificate is verified
//! against (`tls.roots` plus `tls.ca_file`) or, with `tls_insecure_skip_verify`, none at all,
//! and the client certificate it presents (`tls.client_cert_file` / `tls.client_key_file`).
//! The files are read and checked by the config (`TlsConfig::load`), the same way `check`
//! reads them.

use super::BuildError;
use crate::config::TargetConfig;
use std::sync::Arc;

/// The rustls configuration of the target `cfg` (ALPN is set by the connector).
pub(super) fn client_config(cfg: &TargetConfig) -> Result<rustls::ClientConfig, BuildError> {
    let tls_error = |problems| BuildError::Tls {
        target: cfg.name.clone(),
        problems,
    };
    let verify = !cfg.tls_insecure_skip_verify;
    let material = cfg.tls.load(verify).map_err(tls_error)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let builder = if verify {
        builder.with_root_certificates(material.roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    };
    match material.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain, identity.key)
            .map_err(|reason| {
                let path = cfg.tls.client_key_file.clone().unwrap_or_default();
                let path = path.display().to_string();
                let e = crate::config::TlsError::BadKey { path, reason };
                tls_error(vec![("client_key_file", e)])
            }),
    }
}

/// The verifier of `tls_insecure_skip_verify = true`: any certificate, any name; signatures
/// are still checked with the provider's algorithms (the handshake stays well-formed).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
