//! Standard Webhooks signing secrets (`whsec_<base64>`): decoded here, where the config is
//! checked, so `check` and the webhook signer share one rule.

use base64::Engine;

const PREFIX: &str = "whsec_";

/// Why a `signing_secret` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with \"whsec_\" followed by base64")]
    Prefix,
    #[error("the part after \"whsec_\" is not valid base64")]
    Base64,
    #[error("key is {0} bytes; at least 16 (24-64 recommended)")]
    TooShort(usize),
}

/// Decodes a `whsec_<base64>` secret into key bytes.
pub fn decode_signing_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = secret.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| SecretError::Base64)?;
    if key.len() < 16 {
        return Err(SecretError::TooShort(key.len()));
    }
    Ok(key)
}
