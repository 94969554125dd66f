//! Every config the deployment files ship passes `event-relay check`, as shipped and with
//! each of its commented-out options uncommented (issue 25: the SASL example in
//! deploy/kubernetes/sidecar.yaml did not load).
//!
//! The configs: each `*.toml` entry of a ConfigMap in a YAML file under deploy/, each `*.toml`
//! file docker-compose.yml bind-mounts, and each `*.toml` file deploy/Dockerfile copies into
//! the image.
//!
//! Which comment lines are commented-out options, and how a block of them is uncommented:
//! the rule is `commented_out.rs`'s.
//!
//! The environment is the deployment's (a Kubernetes file's Secrets and literal container
//! `env`, compose's `environment` with its defaults, the Dockerfile's `ENV` and the broker its
//! usage line gives), and a plausible value from [`PLAUSIBLE`] for each other `${VAR}` the
//! config references. Files a config names (catalogs, programs) are looked for beside it: the
//! ConfigMap's other entries, or the repository directory of the file. A file that is the
//! deployment's own (a mounted token, a certificate) cannot be in the repository: `cannot read`
//! it (not found) at one of [`FILE_KEYS`] is the one problem allowed.

use super::commented_out::{commented_blocks, uncomment};
use super::{
    bind_mounts, compose, dockerfile_instructions, env_map, env_references, read, root, services,
    yaml_docs, yaml_files_under,
};
use serde_json::Value;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Values for `${VAR}` references no deployment file sets (secrets given out of band).
const PLAUSIBLE: &[(&str, &str)] = &[
    ("KAFKA_BROKERS", "kafka-0.kafka:9092,kafka-1.kafka:9092"),
    ("KAFKA_USERNAME", "event-relay"),
    ("KAFKA_PASSWORD", "kafka-password"),
    ("POSTHOG_HOST", "https://eu.i.posthog.com"),
    ("POSTHOG_API_KEY", "phc_plausible"),
    ("CRM_WEBHOOK_URL", "https://crm.example.com/hooks"),
    (
        "CRM_SIGNING_SECRET",
        "whsec_cmVwbGFjZS13aXRoLXlvdXItc2VjcmV0",
    ),
    (
        "CRM_SIGNING_SECRET_OLD",
        "whsec_b2xkLXNlY3JldC1iZWluZy1yb3RhdGVkLW91dA==",
    ),
    ("CRM_CLIENT_SECRET", "crm-client-secret"),
    ("BILLING_WEBHOOK_URL", "https://billing.example.com/in"),
    ("OTLP_API_KEY", "otlp-api-key"),
];

/// Keys naming a file the deployment provides.
const FILE_KEYS: &[&str] = &[
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "token_file",
    "transform_file",
];

/// A config a deployment file ships, and how that file runs it.
struct Shipped {
    /// `deploy/kubernetes/sidecar.yaml: ConfigMap event-relay-config, config.toml`
    origin: String,
    text: String,
    /// The environment the deployment gives the relay.
    env: BTreeMap<String, String>,
    /// What lies beside the config where it runs.
    beside: Beside,
}

enum Beside {
    /// A ConfigMap's entries (name, text).
    Entries(Vec<(String, String)>),
    /// A directory of the repository.
    Directory(PathBuf),
}

fn shipped_configs() -> Vec<Shipped> {
    let mut out = Vec::new();
    for file in yaml_files_under("deploy") {
        let docs = yaml_docs(&file);
        let env = kubernetes_env(&docs);
        for doc in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
            let entries: Vec<(String, String)> = doc["data"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
            for (name, text) in entries.iter().filter(|(n, _)| n.ends_with(".toml")) {
                out.push(Shipped {
                    origin: format!(
                        "{file}: ConfigMap {}, {name}",
                        doc["metadata"]["name"].as_str().unwrap_or("?")
                    ),
                    text: text.clone(),
                    env: env.clone(),
                    beside: Beside::Entries(entries.clone()),
                });
            }
        }
    }
    for (service_name, service) in services(&compose()) {
        let env = compose_env(service);
        for (source, _) in bind_mounts(service) {
            let rel = source.trim_start_matches("./");
            if rel.ends_with(".toml") {
                out.push(repo_file(
                    format!("docker-compose.yml: services.{service_name} mounts {rel}"),
                    rel,
                    env.clone(),
                ));
            }
        }
    }
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let env = dockerfile_env(&instructions);
    let config_dir = image_config_dir(&instructions);
    for (keyword, args) in &instructions {
        let words: Vec<&str> = args.split_whitespace().collect();
        if keyword != "COPY" || words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        let Some((destination, sources)) = paths.split_last() else {
            continue;
        };
        if !destination.starts_with(&config_dir) {
            continue;
        }
        for source in sources {
            if source.ends_with(".toml") {
                let origin = format!("deploy/Dockerfile: COPY {source}");
                out.push(repo_file(origin, source, env.clone()));
            }
        }
    }
    out
}

fn repo_file(origin: String, rel: &str, env: BTreeMap<String, String>) -> Shipped {
    let dir = root()
        .join(rel)
        .parent()
        .expect("a file has a directory")
        .to_path_buf();
    Shipped {
        origin,
        text: read(rel),
        env,
        beside: Beside::Directory(dir),
    }
}

/// The directory of the config the image's `CMD` runs (`/etc/event-relay/`): configs copied
/// there are the image's.
fn image_config_dir(instructions: &[(String, String)]) -> String {
    let cmd = instructions
        .iter()
        .rfind(|(keyword, _)| keyword == "CMD")
        .expect("deploy/Dockerfile: no CMD");
    let args: Vec<String> = serde_json::from_str(&cmd.1).expect("CMD in exec form");
    let config = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("CMD runs with --config");
    config
        .rsplit_once('/')
        .map(|(dir, _)| format!("{dir}/"))
        .unwrap()
}

/// The Secrets' `stringData` and the literal `env` values of the relay containers.
fn kubernetes_env(docs: &[Value]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for doc in docs {
        if doc["kind"] == "Secret" {
            for (k, v) in doc["stringData"].as_object().into_iter().flatten() {
                env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        let containers = doc
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array);
        for c in containers.into_iter().flatten() {
            for var in c["env"].as_array().into_iter().flatten() {
                if let (Some(k), Some(v)) = (var["name"].as_str(), var["value"].as_str()) {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    env
}

/// A service's `environment`, each `${VAR:-default}` as its default.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    env_map(service)
        .into_iter()
        .filter_map(|(k, v)| match v.strip_prefix("${") {
            None => Some((k, v)),
            Some(reference) => {
                let default = reference.strip_suffix('}')?.split_once(":-")?.1;
                Some((k, default.to_string()))
            }
        })
        .collect()
}

/// The image's `ENV`, and the broker, which every `docker run` line of the Dockerfile's
/// header gives (`-e EVENT_RELAY__KAFKA__BROKERS=kafka:9092`).
fn dockerfile_env(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = instructions
        .iter()
        .filter(|(keyword, _)| keyword == "ENV")
        .flat_map(|(_, args)| args.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("EVENT_RELAY__KAFKA__BROKERS".into(), "kafka:9092".into());
    env
}

// ---------------------------------------------------------------- running check

/// What `check` says of `text`, run as `shipped` runs it; `None` when it passes.
fn check(shipped: &Shipped, text: &str, dir: &Path) -> Option<String> {
    match &shipped.beside {
        Beside::Entries(entries) => {
            for (name, content) in entries {
                std::fs::write(dir.join(name), content).unwrap();
            }
        }
        Beside::Directory(from) => copy_dir(from, dir),
    }
    let config = dir.join("event-relay-under-test.toml");
    std::fs::write(&config, text).unwrap();
    let mut env = shipped.env.clone();
    for var in env_references(text) {
        if let Entry::Vacant(slot) = env.entry(var) {
            let Some((_, value)) = PLAUSIBLE.iter().find(|(name, _)| name == slot.key()) else {
                return Some(format!(
                    "${{{}}}: no plausible value in PLAUSIBLE",
                    slot.key()
                ));
            };
            slot.insert(value.to_string());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_event-relay"))
        .args(["check", "--config"])
        .arg(&config)
        .env_clear()
        .envs(&env)
        .current_dir(dir)
        .output()
        .expect("run event-relay check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let allowed = |line: &str| {
        let (path, message) = line.split_once(": ").unwrap_or_default();
        FILE_KEYS.iter().any(|k| path.ends_with(&format!(".{k}")))
            && message.starts_with("cannot read ")
            && message.ends_with("(os error 2)")
    };
    let passed =
        out.status.success() || (out.status.code() == Some(2) && stdout.lines().all(allowed));
    (!passed).then(|| {
        format!(
            "exit {:?}\n{stdout}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn every_shipped_config_passes_check_with_each_commented_out_option() {
    let shipped = shipped_configs();
    let origins: Vec<&str> = shipped.iter().map(|s| s.origin.as_str()).collect();
    for expected in [
        "sidecar.yaml",
        "standalone.yaml",
        "docker-compose.yml",
        "Dockerfile",
    ] {
        assert!(
            origins.iter().any(|o| o.contains(expected)),
            "no config found in {expected}: {origins:#?}"
        );
    }
    let mut failures = Vec::new();
    let mut variants = 0;
    for s in &shipped {
        let blocks = commented_blocks(&s.text);
        let texts = std::iter::once((String::from("as shipped"), s.text.clone())).chain(
            blocks.iter().map(|b| {
                let lines = format!("lines {}-{} uncommented", b.start + 1, b.end);
                (lines, uncomment(&s.text, b))
            }),
        );
        for (what, text) in texts {
            variants += 1;
            let dir = tempfile::tempdir().unwrap();
            if let Some(said) = check(s, &text, dir.path()) {
                failures.push(format!("{} ({what}):\n{said}", s.origin));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {variants} configs fail check:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
