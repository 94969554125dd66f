//! Every config the deployment files ship passes `event-relay check`, as shipped and with
//! each of its commented-out options uncommented (issue 25: the SASL example in
//! deploy/kubernetes/sidecar.yaml did not load).
//!
//! The configs: each `*.toml` entry of a ConfigMap in a YAML file under deploy/, each `*.toml`
//! file docker-compose.yml bind-mounts, and each `*.toml` file deploy/Dockerfile copies into
//! the image.
//!
//! Which comment lines are commented-out options (the rule): a line that is `# ` (a hash and
//! one space) followed by text that is TOML on its own: a table header (`# [retry_tiers]`,
//! `# [[catalogs]]`) or a `key = value` line (`# create_topics = false`). A value that opens a
//! multi-line string (`# transform = """`) takes the commented lines after it up to the one
//! that closes it. Prose is not TOML, and an example indented inside a paragraph
//! (`#   "sasl.username" = ...`, more than one space) belongs to the paragraph. Consecutive
//! option lines make one block (a section with its keys, or options that go together); each
//! block is uncommented on its own, as a reader enables it: blocks may be alternatives to
//! each other (two forms of `auth`), and a commented-out table header would capture the
//! options commented out after it. A block's `key = value` whose key its table already sets
//! is an alternative to that line (a list of signing secrets while one is rotated): it
//! replaces it.
//!
//! The environment is the deployment's (a Kubernetes file's Secrets and literal container
//! `env`, compose's `environment` with its defaults, the Dockerfile's `ENV` and the broker its
//! usage line gives), and a plausible value from [`PLAUSIBLE`] for each other `${VAR}` the
//! config references. Files a config names (catalogs, programs) are looked for beside it: the
//! ConfigMap's other entries, or the repository directory of the file. A file that is the
//! deployment's own (a mounted token, a certificate) cannot be in the repository: `cannot read`
//! it (not found) at one of [`FILE_KEYS`] is the one problem allowed.

use super::{
    bind_mounts, compose, dockerfile_instructions, env_map, env_references, read, root, services,
    yaml_docs, yaml_files_under,
};
use serde_json::Value;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Range;
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

// ---------------------------------------------------------------- commented-out options

/// The text of a comment line after `# `, when it is written as an option would be.
fn after_hash(line: &str) -> Option<&str> {
    let text = line.trim_start().strip_prefix("# ")?;
    (!text.starts_with(' ')).then_some(text)
}

/// Whether `text` is TOML holding something: a table header or a key with its value.
fn is_toml(text: &str) -> bool {
    text.parse::<toml::Table>().is_ok() && !text.trim().is_empty()
}

/// Where the commented-out option starting at line `i` ends (exclusive), if it is one.
fn option_at(lines: &[&str], i: usize) -> Option<usize> {
    let mut text = after_hash(lines[i])?.to_string();
    let mut end = i + 1;
    while !is_toml(&text) {
        // Only an open multi-line string goes on to the next line.
        let open = text.matches("\"\"\"").count() % 2 == 1 || text.matches("'''").count() % 2 == 1;
        let next = lines.get(end).and_then(|l| uncommented(l));
        text = format!("{text}\n{}", next.filter(|_| open)?);
        end += 1;
    }
    Some(end)
}

/// A comment line without its hash (`#` alone is an empty line of a multi-line string).
fn uncommented(line: &str) -> Option<&str> {
    let text = line.trim_start().strip_prefix('#')?;
    Some(text.strip_prefix(' ').unwrap_or(text))
}

/// The blocks of commented-out options: ranges of consecutive option lines.
fn commented_blocks(text: &str) -> Vec<Range<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(end) = option_at(&lines, i) else {
            i += 1;
            continue;
        };
        match blocks.last_mut() {
            Some(last) if last.end == i => last.end = end,
            _ => blocks.push(i..end),
        }
        i = end;
    }
    blocks
}

/// The key a TOML line sets (`"sasl.mechanism" = ...` → `sasl.mechanism`), if it sets one.
fn assigned_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with(['#', '[']) {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"').to_string())
}

/// `text` with the block's lines uncommented; a line of its table that sets a key the block
/// sets is commented out (the block is its alternative).
fn uncomment(text: &str, block: &Range<usize>) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for i in block.clone() {
        lines[i] = uncommented(&lines[i]).unwrap_or_default().to_string();
    }
    let header = |l: &String| l.trim_start().starts_with('[');
    for i in block.clone() {
        let Some(key) = assigned_key(&lines[i]) else {
            continue;
        };
        let start = (0..i)
            .rev()
            .find(|j| header(&lines[*j]))
            .map_or(0, |j| j + 1);
        let end = (i + 1..lines.len())
            .find(|j| header(&lines[*j]))
            .unwrap_or(lines.len());
        for j in (start..end).filter(|j| !block.contains(j)) {
            if assigned_key(&lines[j]).as_deref() == Some(key.as_str()) {
                lines[j] = format!("# {}", lines[j]);
            }
        }
    }
    lines.join("\n") + "\n"
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

#[test]
fn commented_out_options_are_told_from_prose() {
    let text = "[kafka.options]\n\
                # Quote librdkafka's keys, e.g.\n\
                #   \"sasl.username\" = \"relay\"\n\
                # \"security.protocol\" = \"SASL_SSL\"\n\
                # sasl.mechanism = \"PLAIN\"\n\
                # max_elapsed: 24h by default.\n\
                # [retry_tiers]\n\
                # create_topics = false\n\
                [[targets]]\n\
                signing_secret = \"a\"\n\
                # While rotating:\n\
                # signing_secret = [\"a\", \"b\"]\n\
                # transform = \"\"\"\n\
                # del(.user.email)\n\
                #\n\
                # \"\"\"\n";
    let blocks = commented_blocks(text);
    assert_eq!(blocks, [3..5, 6..8, 11..16]);
    let rotated = uncomment(text, &blocks[2]);
    assert!(
        rotated.contains("\n# signing_secret = \"a\"\n"),
        "{rotated}"
    );
    assert!(
        rotated.contains("\nsigning_secret = [\"a\", \"b\"]\n"),
        "{rotated}"
    );
    assert!(
        rotated.ends_with("transform = \"\"\"\ndel(.user.email)\n\n\"\"\"\n"),
        "{rotated}"
    );
    let sasl = uncomment(text, &blocks[0]);
    assert!(sasl.contains("\nsasl.mechanism = \"PLAIN\"\n"), "{sasl}");
    assert!(
        sasl.contains("\n#   \"sasl.username\""),
        "prose stays: {sasl}"
    );
}
