//! `{{field}}` templates in webhook URLs and header values, filled from envelope fields.
//!
//! Values substituted into URLs are percent-encoded, and templates are only allowed in the path
//! and query (checked by `config::validate`), so an event field can never redirect a delivery to
//! another host.

use crate::envelope::Envelope;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as-is in substituted URL values (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Field(String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if let Some(len) = rest[start + 2..].find("}}") {
                if start > 0 {
                    parts.push(Part::Lit(rest[..start].to_string()));
                }
                parts.push(Part::Field(
                    rest[start + 2..start + 2 + len].trim().to_string(),
                ));
                rest = &rest[start + 2 + len + 2..];
            } else {
                break;
            }
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Self { parts }
    }

    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Renders with envelope fields; a missing field renders empty. `url_encode` percent-encodes
    /// substituted values.
    pub fn render(&self, env: &Envelope, url_encode: bool) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(f) => {
                    let v = env.field_text(f).unwrap_or_default();
                    if url_encode {
                        out.extend(utf8_percent_encode(&v, UNRESERVED));
                    } else {
                        // Header values cannot carry control characters.
                        out.extend(v.chars().filter(|c| !c.is_control()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_encodes() {
        let env = crate::envelope::sample();
        let t = Template::parse("https://h.example/{{source}}/{{event}}?site={{site.id}}");
        assert_eq!(
            t.render(&env, true),
            "https://h.example/komo/CardViewed?site=2d5776b8-158a-4216-aaa1-edbc249e005b"
        );
        let mut evil = env.clone();
        evil.event = "x@evil.example/../?a=b#".into();
        let rendered = Template::parse("https://h.example/{{event}}").render(&evil, true);
        assert_eq!(
            url::Url::parse(&rendered).unwrap().host_str(),
            Some("h.example")
        );
        assert!(Template::parse("plain").is_static());
    }
}
