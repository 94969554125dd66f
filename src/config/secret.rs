//! Standard Webhooks signing secrets (`whsec_<base64>`): decoded here, where the config is
//! checked, so `check` and the webhook signer share one rule. A target holds one secret, or
//! several while one is rotated ([`SigningSecret`]).

use base64::Engine;
use serde::{Deserialize, Serialize};

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
    #[error("an empty list signs nothing (leave the key out for unsigned requests)")]
    EmptyList,
    #[error("the same secret as signing_secret[{0}]")]
    Duplicate(usize),
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

/// A target's `signing_secret`: one secret, or a list while a secret is rotated. Every secret
/// signs every request and the signatures share one `webhook-signature` header
/// (`v1,<sig1> v1,<sig2>`, as Standard Webhooks allows), so a receiver holding any one of them
/// verifies: add the new secret, let the receiver switch, then remove the old one.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SigningSecret {
    /// `signing_secret = "whsec_..."`.
    One(String),
    /// `signing_secret = ["whsec_...", "whsec_..."]`.
    Rotation(Vec<String>),
}

impl SigningSecret {
    /// Each secret with its key path under the target: `signing_secret` for the one secret,
    /// `signing_secret[M]` for the elements of a list.
    pub fn secrets(&self) -> Vec<(String, &str)> {
        match self {
            Self::One(s) => vec![("signing_secret".to_string(), s.as_str())],
            Self::Rotation(list) => list
                .iter()
                .enumerate()
                .map(|(m, s)| (format!("signing_secret[{m}]"), s.as_str()))
                .collect(),
        }
    }

    /// Every problem of the secrets, each with its key path under the target (see
    /// [`Self::secrets`]).
    pub fn problems(&self) -> Vec<(String, SecretError)> {
        if matches!(self, Self::Rotation(list) if list.is_empty()) {
            return vec![("signing_secret".into(), SecretError::EmptyList)];
        }
        let secrets = self.secrets();
        let mut problems = Vec::new();
        for (m, (at, secret)) in secrets.iter().enumerate() {
            if let Err(e) = decode_signing_secret(secret) {
                problems.push((at.clone(), e));
            } else if let Some(first) = secrets[..m].iter().position(|(_, s)| s == secret) {
                problems.push((at.clone(), SecretError::Duplicate(first)));
            }
        }
        problems
    }

    /// The key bytes of every secret, in order (the first problem if one cannot be used).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, SecretError> {
        if let Some((_, e)) = self.problems().into_iter().next() {
            return Err(e);
        }
        self.secrets()
            .into_iter()
            .map(|(_, s)| decode_signing_secret(s))
            .collect()
    }
}

/// Never the secrets themselves (a config printed for debugging must not leak them).
impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(_) => f.write_str("SigningSecret(<redacted>)"),
            Self::Rotation(list) => write!(f, "SigningSecret([<redacted>; {}])", list.len()),
        }
    }
}

impl From<String> for SigningSecret {
    fn from(secret: String) -> Self {
        Self::One(secret)
    }
}

impl From<&str> for SigningSecret {
    fn from(secret: &str) -> Self {
        Self::One(secret.to_string())
    }
}

impl From<Vec<String>> for SigningSecret {
    fn from(secrets: Vec<String>) -> Self {
        Self::Rotation(secrets)
    }
}

/// A string or a list of strings, with an error that says so (serde's untagged enums only
/// say "did not match any variant").
impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SigningSecret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a \"whsec_...\" secret or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(SigningSecret::One(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    list.push(s);
                }
                Ok(SigningSecret::Rotation(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> String {
        let key = [byte; 24];
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    #[test]
    fn one_secret_or_a_list_each_checked_at_its_own_key_path() {
        let one: SigningSecret = serde_json::from_value(serde_json::json!("nope")).unwrap();
        assert_eq!(
            one.problems(),
            vec![("signing_secret".to_string(), SecretError::Prefix)]
        );
        let list: SigningSecret =
            serde_json::from_value(serde_json::json!([secret(1), "whsec_!!", secret(1)])).unwrap();
        assert_eq!(
            list.problems(),
            vec![
                ("signing_secret[1]".to_string(), SecretError::Base64),
                ("signing_secret[2]".to_string(), SecretError::Duplicate(0)),
            ]
        );
        assert!(list.keys().is_err());
        let empty = SigningSecret::Rotation(vec![]);
        assert_eq!(
            empty.problems(),
            vec![("signing_secret".to_string(), SecretError::EmptyList)]
        );
        let good = SigningSecret::from(vec![secret(1), secret(2)]);
        assert_eq!(good.keys().unwrap(), vec![vec![1; 24], vec![2; 24]]);
    }

    #[test]
    fn check_names_each_secret_of_a_list_once_without_showing_it() {
        let text = r#"
[kafka]
brokers = "127.0.0.1:9092"
[results]
topic = "results"
[dead_letter]
topic = "dlq"
[[sources]]
topic = "komo"
format = "komo"
[[targets]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/in"
signing_secret = ["${NEW_SECRET}", "whsec_c2hvcnQ=", "${OLD_SECRET}"]
"#;
        let env = [("NEW_SECRET".to_string(), secret(1))];
        let err = crate::config::load_str(text, env).unwrap_err();
        let p: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            p,
            [
                "targets[0].signing_secret[2]: environment variable OLD_SECRET is not set",
                "targets[0].signing_secret[1]: key is 5 bytes; at least 16 (24-64 recommended)",
            ],
        );
    }

    #[test]
    fn another_shape_is_named_and_no_secret_is_shown() {
        let err = serde_json::from_value::<SigningSecret>(serde_json::json!(5)).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a \"whsec_...\" secret or a list of them"),
            "{err}"
        );
        let shown = format!("{:?}", SigningSecret::from(vec![secret(1), secret(2)]));
        assert_eq!(shown, "SigningSecret([<redacted>; 2])");
        assert!(!format!("{:?}", SigningSecret::from(secret(3))).contains("whsec"));
    }
}
