//! `targets[].tls` read with certificates made here (rcgen): what loads, and what `check` says
//! about each file that cannot be used, at its key path, once.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA that signs certificates for the tests.
fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "event-relay test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` signed by `ca`, and its key, both PEM.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A directory of files, named by the tests.
struct Files(tempfile::TempDir);

impl Files {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self(dir)
    }
    fn path(&self, name: &str) -> Option<PathBuf> {
        Some(self.0.path().join(name))
    }
}

/// The problems as `key: message` lines.
fn lines(problems: TlsProblems) -> Vec<String> {
    problems
        .into_iter()
        .map(|(key, e)| format!("{key}: {e}"))
        .collect()
}

#[test]
fn a_ca_bundle_joins_the_roots_and_a_matching_pair_is_the_identity() {
    let ca = ca();
    let (cert, key) = leaf(&ca, "relay");
    let files = Files::new(&[("ca.pem", &ca.pem()), ("c.pem", &cert), ("c.key", &key)]);
    let tls = TlsConfig {
        ca_file: files.path("ca.pem"),
        client_cert_file: files.path("c.pem"),
        client_key_file: files.path("c.key"),
        ..Default::default()
    };
    let material = tls.load(true).unwrap_or_else(|p| panic!("{:?}", lines(p)));
    let webpki = webpki_roots::TLS_SERVER_ROOTS.len();
    assert_eq!(material.roots.len(), webpki + 1);
    let identity = material.identity.expect("a client identity");
    assert_eq!(identity.chain.len(), 1);

    // Without verification no roots are loaded, and a client certificate still is.
    let unverified = TlsConfig {
        ca_file: None,
        ..tls
    };
    let material = unverified
        .load(false)
        .unwrap_or_else(|p| panic!("{:?}", lines(p)));
    assert!(material.roots.is_empty());
    assert!(material.identity.is_some());
}

#[test]
fn each_unusable_file_is_named_at_its_key_with_the_reason() {
    let ca = ca();
    let (cert, _) = leaf(&ca, "relay");
    let files = Files::new(&[("notes.txt", "not a certificate\n"), ("c.pem", &cert)]);
    let missing = files.path("missing.pem").unwrap();
    let tls = TlsConfig {
        ca_file: Some(missing.clone()),
        client_cert_file: files.path("notes.txt"),
        // The certificate given as the key.
        client_key_file: files.path("c.pem"),
        ..Default::default()
    };
    let got = lines(tls.load(true).err().expect("problems"));
    let notes = files.path("notes.txt").unwrap();
    let cert_path = files.path("c.pem").unwrap();
    assert_eq!(
        got,
        [
            format!(
                "ca_file: cannot read {}: No such file or directory (os error 2)",
                missing.display()
            ),
            format!(
                "client_cert_file: {} is not PEM: no \"-----BEGIN ...-----\" section in it",
                notes.display()
            ),
            format!(
                "client_key_file: {} holds no private key (found: CERTIFICATE)",
                cert_path.display()
            ),
        ]
    );
}

#[test]
fn a_key_file_as_the_ca_and_the_key_of_another_certificate_are_refused() {
    let ca = ca();
    let (cert, _) = leaf(&ca, "relay");
    let (_, other_key) = leaf(&ca, "someone-else");
    let files = Files::new(&[("c.pem", &cert), ("other.key", &other_key)]);
    let tls = TlsConfig {
        ca_file: files.path("other.key"),
        client_cert_file: files.path("c.pem"),
        client_key_file: files.path("other.key"),
        ..Default::default()
    };
    let (key, cert) = (
        files.path("other.key").unwrap(),
        files.path("c.pem").unwrap(),
    );
    assert_eq!(
        lines(tls.load(true).err().expect("problems")),
        [
            format!(
                "ca_file: {} holds no certificate (found: PRIVATE KEY)",
                key.display()
            ),
            format!(
                "client_key_file: the private key in {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
        ]
    );
}

#[test]
fn half_a_client_certificate_and_roots_without_verification_are_refused() {
    let only_cert = TlsConfig {
        client_cert_file: Some("c.pem".into()),
        ..Default::default()
    };
    assert_eq!(
        lines(only_cert.load(true).err().unwrap()),
        ["client_cert_file: set without client_key_file (a client certificate needs both files)"]
    );
    let unverified = TlsConfig {
        ca_file: Some("ca.pem".into()),
        roots: TlsRoots::Both,
        client_key_file: Some("c.key".into()),
        ..Default::default()
    };
    assert_eq!(
        lines(unverified.load(false).err().unwrap()),
        [
            "ca_file: has no effect with tls_insecure_skip_verify = true (no certificate is verified)",
            "roots: has no effect with tls_insecure_skip_verify = true (no certificate is verified)",
            "client_key_file: set without client_cert_file (a client certificate needs both files)",
        ]
    );
    let empty = TlsConfig {
        ca_file: Some("".into()),
        ..Default::default()
    };
    assert_eq!(
        lines(empty.load(true).err().unwrap()),
        ["ca_file: must not be empty"]
    );
}

#[test]
fn the_system_store_loads_and_an_empty_one_is_an_error() {
    // This host's store (Debian: /etc/ssl/certs), as `roots = "system"` reads it.
    let system = TlsConfig {
        roots: TlsRoots::System,
        ..Default::default()
    };
    let material = system
        .load(true)
        .unwrap_or_else(|p| panic!("{:?}", lines(p)));
    assert!(!material.roots.is_empty());
    let both = TlsConfig {
        roots: TlsRoots::Both,
        ..Default::default()
    };
    let material = both.load(true).unwrap_or_else(|p| panic!("{:?}", lines(p)));
    assert!(material.roots.len() > webpki_roots::TLS_SERVER_ROOTS.len());

    let mut roots = rustls::RootCertStore::empty();
    let none = rustls_native_certs::CertificateResult::default();
    let err = system_roots(&mut roots, none).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the system trust store holds no usable certificate (none found; SSL_CERT_FILE or \
         SSL_CERT_DIR can point at a CA bundle)"
    );
}

#[test]
fn check_names_the_target_key_and_resolves_paths_against_the_config_directory() {
    let ca = ca();
    let files = Files::new(&[("ca.pem", &ca.pem()), ("notes.txt", "hello\n")]);
    let config = files.0.path().join("relay.toml");
    std::fs::write(
        &config,
        r#"
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
name = "private-ca"
kind = "webhook"
url = "https://partner.internal/hook"
tls = { ca_file = "ca.pem" }
[[targets]]
name = "broken"
kind = "webhook"
url = "https://partner.internal/hook"
tls = { ca_file = "notes.txt", roots = "everything" }
[[targets]]
name = "half"
kind = "webhook"
url = "https://partner.internal/hook"
tls = { client_key_file = "c.key" }
"#,
    )
    .unwrap();
    let (loaded, problems) = super::super::load_partial(&config);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("targets[1].tls.roots: unknown value \"everything\""),
        "{problems:#?}"
    );
    let notes = files.0.path().join("notes.txt");
    assert_eq!(
        problems[1..],
        [
            format!(
                "targets[1].tls.ca_file: {} is not PEM: no \"-----BEGIN ...-----\" section in it",
                notes.display()
            ),
            "targets[2].tls.client_key_file: set without client_cert_file (a client \
             certificate needs both files)"
                .to_string(),
        ]
    );
    let loaded = loaded.expect("what loaded");
    assert_eq!(loaded.targets[0].tls.ca_file, files.path("ca.pem"));
}
