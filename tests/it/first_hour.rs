//! The first hour of a new user, as the repository's own files promise it (issue 13):
//! - every `docker run` command in `deploy/Dockerfile`'s header passes `event-relay check` with
//!   the Dockerfile's `ENV` and exactly the command's `-e` variables, each of which is needed;
//!   the plain usage line needs only the broker;
//! - the demo's and README's "PostHog receives N of the M sample events" is what `event-relay
//!   route` says for the fixtures on `config/example.toml`.
//!
//! The binary runs as a subprocess with a cleared environment, so nothing from the developer's
//! shell leaks in.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn relay(args: &[&str], env: &BTreeMap<String, String>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_event-relay"));
    cmd.args(args)
        .env_clear()
        .envs(env)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn event-relay");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("event-relay output")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ------------------------------------------------------------------ Dockerfile

/// Dockerfile instructions as (KEYWORD, arguments), comments skipped, continuations joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((keyword.to_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

/// The `docker run` commands in the Dockerfile's leading comment block, continuations joined.
fn usage_commands(dockerfile: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in dockerfile.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let comment = comment.trim();
        let part = match current.take() {
            Some(so_far) => so_far + " " + comment,
            None if comment.starts_with("docker run ") => comment.to_string(),
            None => continue,
        };
        match part.strip_suffix('\\') {
            Some(head) => current = Some(head.trim_end().to_string()),
            None => commands.push(part),
        }
    }
    commands
}

/// A `docker run` command: its `-e` variables and the `--config` path it runs (in the image).
struct Usage {
    command: String,
    env: Vec<(String, String)>,
    config: Option<String>,
}

fn parse_usage(command: &str) -> Usage {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut env = Vec::new();
    let mut config = None;
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or_default();
        match *w {
            "-e" | "--env" => {
                let (k, v) = next
                    .split_once('=')
                    .unwrap_or_else(|| panic!("`{command}`: -e {next} has no value"));
                env.push((k.to_string(), v.to_string()));
            }
            "--config" | "-c" => config = Some(next.to_string()),
            _ => {}
        }
    }
    Usage {
        command: command.to_string(),
        env,
        config,
    }
}

/// What the image provides: `ENV` variables, the config path `CMD` runs, and where each file
/// `COPY`ed from the build context (the repo) lands.
struct Image {
    env: BTreeMap<String, String>,
    default_config: String,
    copied_from: BTreeMap<String, String>,
}

fn image(dockerfile: &str) -> Image {
    let mut image = Image {
        env: BTreeMap::new(),
        default_config: String::new(),
        copied_from: BTreeMap::new(),
    };
    for (keyword, args) in instructions(dockerfile) {
        match keyword.as_str() {
            "ENV" => {
                for pair in args.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=') {
                        image.env.insert(k.to_string(), v.to_string());
                    }
                }
            }
            "COPY" if !args.contains("--from") => {
                let paths: Vec<&str> = args.split_whitespace().collect();
                if let [source, dest] = paths[..] {
                    image
                        .copied_from
                        .insert(dest.to_string(), source.to_string());
                }
            }
            "CMD" => {
                let argv: Vec<String> = serde_json::from_str(&args)
                    .unwrap_or_else(|e| panic!("CMD {args}: not a JSON array: {e}"));
                let at = argv.iter().position(|a| a == "--config" || a == "-c");
                image.default_config = at
                    .and_then(|i| argv.get(i + 1).cloned())
                    .unwrap_or_else(|| panic!("CMD {args}: no --config"));
            }
            _ => {}
        }
    }
    image
}

/// The repo file a config path in the image comes from.
fn repo_file(image: &Image, in_image: &str) -> String {
    image
        .copied_from
        .get(in_image)
        .cloned()
        .unwrap_or_else(|| panic!("no COPY puts a file at {in_image}"))
}

/// What a `check` failure must mention when `var` is missing: the variable itself, or for an
/// `EVENT_RELAY__A__B` override the key it sets (`b`).
fn mention_of(var: &str) -> String {
    match var.strip_prefix("EVENT_RELAY__") {
        Some(path) => path.rsplit("__").next().unwrap_or(path).to_lowercase(),
        None => var.to_string(),
    }
}

#[test]
fn every_docker_run_line_of_the_dockerfile_passes_check_with_exactly_its_variables() {
    let dockerfile = read("deploy/Dockerfile");
    let image = image(&dockerfile);
    let usages: Vec<Usage> = usage_commands(&dockerfile)
        .iter()
        .map(|c| parse_usage(c))
        .collect();
    assert!(
        !usages.is_empty(),
        "deploy/Dockerfile's header has no `docker run` command"
    );

    // The plain usage line (the image's own CMD) needs nothing but the broker.
    let plain = usages
        .iter()
        .find(|u| u.config.is_none())
        .expect("a `docker run` line that runs the image's default CMD");
    let plain_vars: Vec<&str> = plain.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        plain_vars,
        ["EVENT_RELAY__KAFKA__BROKERS"],
        "`{}`: the default config must run with only the broker set",
        plain.command
    );

    for usage in &usages {
        let in_image = usage.config.as_deref().unwrap_or(&image.default_config);
        let config = repo_file(&image, in_image);
        let full: BTreeMap<String, String> = image
            .env
            .clone()
            .into_iter()
            .chain(usage.env.iter().cloned())
            .collect();
        let out = relay(&["check", "--config", &config], &full, None);
        assert!(
            out.status.success(),
            "`{}` ({config} with the Dockerfile's ENV and the -e variables) fails check:\n{}",
            usage.command,
            text(&out)
        );
        // Each variable is needed: without it, check fails and says what is missing.
        for (var, _) in &usage.env {
            let mut without = full.clone();
            without.remove(var);
            let out = relay(&["check", "--config", &config], &without, None);
            let all = text(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "`{}`: {config} passes check without {var}, so the command sets a variable it does not need:\n{all}",
                usage.command
            );
            assert!(
                all.contains(&mention_of(var)),
                "`{}`: without {var}, check on {config} does not mention `{}`:\n{all}",
                usage.command,
                mention_of(var)
            );
        }
    }
}

#[test]
fn dockerfile_usage_parsing_reads_continued_comment_lines() {
    let text = "# header\n#   docker run -e A=1 img\n#   docker run -e B=2 \\\n#     -e C=3 img run --config /x.toml\n# tail\nFROM x\n# docker run -e IGNORED=1 img\n";
    let usages: Vec<Usage> = usage_commands(text)
        .iter()
        .map(|c| parse_usage(c))
        .collect();
    assert_eq!(usages.len(), 2);
    assert_eq!(usages[0].env, [("A".to_string(), "1".to_string())]);
    assert_eq!(usages[0].config, None);
    let vars: Vec<&str> = usages[1].env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(vars, ["B", "C"]);
    assert_eq!(usages[1].config.as_deref(), Some("/x.toml"));
    assert_eq!(mention_of("EVENT_RELAY__KAFKA__BROKERS"), "brokers");
    assert_eq!(mention_of("POSTHOG_HOST"), "POSTHOG_HOST");
}

// ------------------------------------------------------------------ the demo's numbers

/// The environment scripts/demo gives config/example.toml (values only need to be valid).
fn example_env() -> BTreeMap<String, String> {
    [
        ("KAFKA_BROKERS", "127.0.0.1:9092"),
        ("POSTHOG_HOST", "http://127.0.0.1:8080"),
        ("POSTHOG_API_KEY", "phc_demo"),
        ("CRM_WEBHOOK_URL", "http://127.0.0.1:8080/crm"),
        (
            "CRM_SIGNING_SECRET",
            "whsec_cmVwbGFjZS13aXRoLXlvdXItc2VjcmV0",
        ),
        ("BILLING_WEBHOOK_URL", "http://127.0.0.1:8080/billing"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// How many of `lines` `event-relay route` sends to the `posthog` target, read on `topic`.
fn routed_to_posthog(lines: &[&str], topic: &str) -> usize {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = relay(
        &["route", "--config", "config/example.toml", "--topic", topic],
        &example_env(),
        Some(&input),
    );
    assert!(out.status.success(), "route failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let decisions: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("route output {l}: {e}")))
        .collect();
    assert_eq!(
        decisions.len(),
        lines.len(),
        "route printed one line per input line:\n{}",
        text(&out)
    );
    decisions
        .iter()
        .filter(|d| {
            d["targets"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["target"] == "posthog"))
        })
        .count()
}

#[test]
fn readme_says_how_many_sample_events_reach_posthog_in_the_demo() {
    let fixtures = read("tests/fixtures/valid_events.jsonl");
    // As scripts/demo splits them: acemate (PostHog-style) events carry a distinct_id.
    let (acemate, komo): (Vec<&str>, Vec<&str>) = fixtures
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| l.contains("\"distinct_id\""));
    let total = komo.len() + acemate.len();
    let to_posthog =
        routed_to_posthog(&komo, "komo.events") + routed_to_posthog(&acemate, "acemate.events");
    assert!(
        to_posthog < total,
        "every sample reaches PostHog: the README's explanation of the dropped ones is stale"
    );
    let claim = format!("PostHog receives {to_posthog} of the {total} sample events");
    let readme = read("README.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        readme.contains(&claim),
        "README.md should say \"{claim}\" (what `event-relay route` says for the demo's samples)"
    );
}
