//! The `auth` key of a target: how the relay authenticates to a partner that wants an
//! `Authorization: Bearer` token — one read from a file (`kind = "bearer"`, e.g. a token that
//! Kubernetes mounts and rotates) or one from an OAuth2 token endpoint (`kind = "oauth2"`, the
//! client-credentials grant). The token itself is obtained by `deliver::auth`; this module
//! reads the keys and checks them (the token file is read here, so `check` names a file that
//! cannot be read).

use super::problem::Problem;
use super::TargetConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// How a target authenticates: exactly one kind, chosen by `kind`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind")]
pub enum AuthConfig {
    /// `kind = "bearer"`: a static token kept in a file.
    #[serde(rename = "bearer")]
    Bearer(BearerAuth),
    /// `kind = "oauth2"`: OAuth2 client credentials (RFC 6749 §4.4).
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Auth),
}

/// `auth = { kind = "bearer", token_file = "..." }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The file whose content, trimmed, is sent as `Authorization: Bearer <content>`. A file,
    /// not a value, because that is how Kubernetes hands out secrets and rotating tokens (a
    /// mounted Secret or a projected service account token): the relay notices when the file
    /// changes and sends the new token without a restart. A relative path is relative to the
    /// config file's directory.
    pub token_file: PathBuf,
}

/// `auth = { kind = "oauth2", token_url, client_id, client_secret, scopes }`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    /// The authorization server's token endpoint (`https://login.example.com/oauth2/token`),
    /// where the relay exchanges its client credentials for an access token.
    pub token_url: String,
    /// The client identifier the partner registered for the relay.
    pub client_id: String,
    /// The client's secret (usually `${VAR}`, so it never sits in the file). Sent to the token
    /// endpoint only, never logged, never shown by `route`.
    pub client_secret: String,
    /// The scopes to ask for (sent space-separated as `scope`); empty: the endpoint's default.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The secret stays out of `{:?}` output (a config printed for debugging).
impl fmt::Debug for OAuth2Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Auth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthConfig::Bearer(b) => b.fmt(f),
            AuthConfig::OAuth2(o) => o.fmt(f),
        }
    }
}

/// Why a bearer token file cannot be used (its content is never part of the message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {cause}")]
    Unreadable { path: String, cause: String },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} holds characters an HTTP header cannot carry (a line break or control character inside the token)")]
    NotHeaderText { path: String },
}

/// The token in a bearer token file: its content, trimmed, checked to be a usable header value.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Unreadable {
        path: shown.clone(),
        cause: e.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty { path: shown });
    }
    if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(TokenFileError::NotHeaderText { path: shown });
    }
    Ok(token.to_string())
}

/// The checks of the `auth` key of target `i` (part of `Config::validate`): the token file
/// readable and non-empty, the OAuth2 keys usable, and no other source of `Authorization`.
pub(super) fn check_auth(i: usize, t: &TargetConfig, p: &mut Vec<Problem>) {
    let Some(auth) = &t.auth else {
        return;
    };
    let at = |k: &str| format!("targets[{i}].auth.{k}");
    match auth {
        AuthConfig::Bearer(b) if b.token_file.as_os_str().is_empty() => {
            p.push(Problem::new(&at("token_file"), "is empty"));
        }
        AuthConfig::Bearer(b) => {
            if let Err(e) = read_token_file(&b.token_file) {
                p.push(Problem::new(&at("token_file"), e));
            }
        }
        AuthConfig::OAuth2(o) => check_oauth2(o, &at, p),
    }
    for name in t.headers.keys() {
        if name.eq_ignore_ascii_case("authorization") {
            p.push(Problem::new(
                &format!("targets[{i}].headers.{name}"),
                "the relay sets Authorization from auth: remove the header or the auth key",
            ));
        }
    }
    let userinfo =
        url::Url::parse(&t.url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some());
    if userinfo {
        p.push(Problem::new(
            &format!("targets[{i}].url"),
            "carries credentials (user:password@) and auth is set: the relay sends one \
             Authorization header, from auth; remove the credentials from the URL",
        ));
    }
}

fn check_oauth2(o: &OAuth2Auth, at: &dyn Fn(&str) -> String, p: &mut Vec<Problem>) {
    match url::Url::parse(&o.token_url) {
        Err(e) => p.push(Problem::new(
            &at("token_url"),
            format!("invalid URL {:?}: {e}", o.token_url),
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => p.push(Problem::new(
            &at("token_url"),
            format!("URL {:?} must use http or https", o.token_url),
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => p.push(Problem::new(
            &at("token_url"),
            format!("URL {:?} has no host", o.token_url),
        )),
        Ok(_) => {}
    }
    for (key, value) in [
        ("client_id", &o.client_id),
        ("client_secret", &o.client_secret),
    ] {
        if value.trim().is_empty() {
            p.push(Problem::new(&at(key), "must not be empty"));
        }
    }
    for (j, scope) in o.scopes.iter().enumerate() {
        // RFC 6749 §3.3: a scope token is printable ASCII without space, `"` or `\`.
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !valid {
            p.push(Problem::new(
                &at(&format!("scopes[{j}]")),
                format!(
                    "{scope:?} is not a scope (printable ASCII without spaces, quotes or \
                     backslashes; give each scope as its own list item)"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(auth: serde_json::Value) -> TargetConfig {
        serde_json::from_value(serde_json::json!({
            "name": "crm", "kind": "webhook", "url": "https://crm.example.com/in", "auth": auth,
        }))
        .unwrap()
    }

    fn problems(t: &TargetConfig) -> Vec<Problem> {
        let mut p = Vec::new();
        check_auth(0, t, &mut p);
        p
    }

    #[test]
    fn auth_is_one_kind_with_its_own_keys() {
        let t = target(serde_json::json!({"kind": "bearer", "token_file": "/run/token"}));
        assert_eq!(
            t.auth,
            Some(AuthConfig::Bearer(BearerAuth {
                token_file: "/run/token".into()
            }))
        );
        let t = target(serde_json::json!({
            "kind": "oauth2", "token_url": "https://login.example.com/token",
            "client_id": "relay", "client_secret": "s3cret", "scopes": ["a", "b"],
        }));
        let Some(AuthConfig::OAuth2(o)) = &t.auth else {
            panic!("{:?}", t.auth)
        };
        assert_eq!(o.scopes, ["a", "b"]);
        assert!(
            !format!("{t:?}").contains("s3cret"),
            "Debug shows the secret"
        );
        for wrong in [
            serde_json::json!({"kind": "bearer", "token_file": "/t", "client_id": "x"}),
            serde_json::json!({"kind": "basic", "token_file": "/t"}),
            serde_json::json!({"token_file": "/t"}),
        ] {
            let spec = serde_json::json!({
                "name": "crm", "kind": "webhook", "url": "https://x/", "auth": wrong,
            });
            assert!(
                serde_json::from_value::<TargetConfig>(spec).is_err(),
                "{wrong}"
            );
        }
    }

    #[test]
    fn the_token_file_is_read_and_named_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  abc.def \n").unwrap();
        assert_eq!(read_token_file(&file).unwrap(), "abc.def");
        let t = target(serde_json::json!({"kind": "bearer", "token_file": file}));
        assert_eq!(problems(&t), vec![]);

        std::fs::write(&file, "\n").unwrap();
        let p = problems(&t);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "targets[0].auth.token_file");
        assert!(p[0].message.ends_with("is empty"), "{}", p[0].message);

        std::fs::write(&file, "secret-part\nsecond-line").unwrap();
        let p = problems(&t);
        assert!(p[0].message.contains("cannot carry"), "{}", p[0].message);
        assert!(!p[0].message.contains("secret-part"));

        let missing =
            target(serde_json::json!({"kind": "bearer", "token_file": dir.path().join("nope")}));
        assert!(problems(&missing)[0].message.starts_with("cannot read "));
    }

    #[test]
    fn oauth2_keys_are_checked_each_at_its_path() {
        let t = target(serde_json::json!({
            "kind": "oauth2", "token_url": "ftp://login.example.com/token",
            "client_id": " ", "client_secret": "", "scopes": ["ok", "two words"],
        }));
        let paths: Vec<_> = problems(&t).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "targets[0].auth.token_url",
                "targets[0].auth.client_id",
                "targets[0].auth.client_secret",
                "targets[0].auth.scopes[1]",
            ]
        );
    }

    /// The keys as an operator writes them: an inline table, a token file relative to the
    /// config file, a client secret from the environment.
    #[test]
    fn auth_from_toml_resolves_the_file_and_expands_the_secret() {
        let base = r#"
            kafka = { brokers = "127.0.0.1:9092" }
            results = { topic = "results" }
            dead_letter = { topic = "dlq" }
            sources = [{ topic = "in", format = "komo" }]
            default_targets = ["crm"]
        "#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("token"),
            "abc
",
        )
        .unwrap();
        let path = dir.path().join("relay.toml");
        let bearer = r#"
            [[targets]]
            name = "crm"
            kind = "webhook"
            url = "https://crm.example.com/in"
            auth = { kind = "bearer", token_file = "token" }
        "#;
        std::fs::write(&path, format!("{base}{bearer}")).unwrap();
        let cfg = super::super::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let Some(AuthConfig::Bearer(b)) = &cfg.targets[0].auth else {
            panic!("{:?}", cfg.targets[0].auth)
        };
        assert_eq!(b.token_file, dir.path().join("token"));

        let oauth2 = r#"
            [[targets]]
            name = "crm"
            kind = "webhook"
            url = "https://crm.example.com/in"
            [targets.auth]
            kind = "oauth2"
            token_url = "https://login.example.com/token"
            client_id = "relay"
            client_secret = "${CRM_CLIENT_SECRET}"
            scopes = ["crm.write"]
        "#;
        let env = [("CRM_CLIENT_SECRET".to_string(), "s3cret".to_string())];
        let cfg = super::super::load_str(&format!("{base}{oauth2}"), env)
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(AuthConfig::OAuth2(o)) = &cfg.targets[0].auth else {
            panic!("{:?}", cfg.targets[0].auth)
        };
        assert_eq!(o.client_secret, "s3cret");
        let misspelt = r#"
            [[targets]]
            name = "crm"
            kind = "webhook"
            url = "https://crm.example.com/in"
            auth = { kind = "bearer", token_file = "/run/token", scope = "x" }
        "#;
        let e = super::super::load_str(&format!("{base}{misspelt}"), []).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        // The tagged table is read as a whole: the unknown key is still named by its path.
        assert_eq!(e.problems[0].path, "targets[0].auth.scope", "{e}");
        assert!(e.problems[0].message.starts_with("unknown key"), "{e}");
    }

    #[test]
    fn auth_is_the_only_source_of_authorization() {
        let mut t = target(serde_json::json!({
            "kind": "oauth2", "token_url": "https://login.example.com/token",
            "client_id": "relay", "client_secret": "s",
        }));
        assert_eq!(problems(&t), vec![]);
        t.headers.insert("authorization".into(), "Bearer x".into());
        t.url = "https://u:p@crm.example.com/in".into();
        let paths: Vec<_> = problems(&t).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            ["targets[0].headers.authorization", "targets[0].url"]
        );
    }
}
