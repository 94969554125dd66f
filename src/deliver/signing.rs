//! Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
//!
//! A signature is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where the key
//! is the base64-decoded part of the `whsec_...` secret. A target with several secrets (a
//! rotation) sends one signature per secret in the one header, space-separated, in the
//! configured order: a receiver accepts a request if any signature verifies.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::config::{SecretError, SigningSecret};

/// Decodes a `whsec_<base64>` secret into key bytes (the rule lives with the config, which
/// `check` applies too).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    crate::config::decode_signing_secret(secret)
}

/// A ready-to-use signer (keys decoded once).
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub fn new(secret: &SigningSecret) -> Result<Self, SecretError> {
        Ok(Self {
            keys: secret.keys()?,
        })
    }

    /// The `webhook-signature` header value for one message: one `v1,<base64>` per secret.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mut header = String::with_capacity(self.keys.len() * 48);
        for key in &self.keys {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(msg_id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str("v1,");
            base64::engine::general_purpose::STANDARD
                .encode_string(mac.finalize().into_bytes(), &mut header);
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // Test vector from the Standard Webhooks reference libraries.
        let s = Signer::new(&"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()).unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_of_a_rotation_signs_in_one_header() {
        let (old, new) = (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_c2VudCBhbG9uZyB3aXRoIHRoZSBvbGQgb25l",
        );
        let args = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let alone = |s: &str| Signer::new(&s.into()).unwrap().sign(args.0, args.1, args.2);
        let both = Signer::new(&vec![old.to_string(), new.to_string()].into()).unwrap();
        assert_eq!(
            both.sign(args.0, args.1, args.2),
            format!("{} {}", alone(old), alone(new))
        );
        let bad = vec![old.to_string(), "whsec_c2hvcnQ=".to_string()];
        assert_eq!(
            Signer::new(&bad.into()).unwrap_err(),
            SecretError::TooShort(5)
        );
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
