//! Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
//!
//! The signature is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where the key
//! is the base64-decoded part of the `whsec_...` secret.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::config::SecretError;

/// Decodes a `whsec_<base64>` secret into key bytes (the rule lives with the config, which
/// `check` applies too).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    crate::config::decode_signing_secret(secret)
}

/// A ready-to-use signer (key decoded once).
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self {
            key: decode_secret(secret)?,
        })
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // Test vector from the Standard Webhooks reference libraries.
        let s = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rejects_bad_secrets() {
        assert_eq!(decode_secret("nope"), Err(SecretError::Prefix));
        assert_eq!(decode_secret("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(
            decode_secret("whsec_c2hvcnQ="),
            Err(SecretError::TooShort(5))
        );
    }
}
