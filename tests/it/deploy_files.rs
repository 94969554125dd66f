//! Consistency of the deployment files with each other and with the repo.
//!
//! No Docker engine or cluster is needed: the files are parsed and cross-checked.
//! docker-compose.yml (services, `depends_on`, bind mounts, the relay's port and
//! Dockerfile), deploy/Dockerfile, deploy/prometheus/*, every YAML under deploy/
//! (Kubernetes manifests: probes on /healthz and /readyz at port 9464, referenced
//! ConfigMaps/Secrets, monitors matching pods and services), the Grafana
//! dashboard and the alert rules (every `event_relay_*` name they use is a metric
//! the relay exports), and .dockerignore.
//!
//! Uses only std, serde_json and serde_norway (YAML is read into `serde_json::Value`).
//! [`configs`]: every config these files ship passes `event-relay check`, also with each of
//! its commented-out options uncommented (which lines those are: [`commented_out`]).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

mod commented_out;
mod configs;

/// The metrics the relay exports (issue 5; the retry tiers' four from issue 14). Histograms
/// also expose `_bucket`, `_sum` and `_count` series. `metric_list_matches_the_code` keeps
/// this list equal to the names defined in `src/metrics.rs`.
const COUNTERS: &[&str] = &[
    "event_relay_messages_consumed_total",
    "event_relay_events_normalized_total",
    "event_relay_validation_problems_total",
    "event_relay_dead_letters_total",
    "event_relay_deliveries_total",
    "event_relay_delivery_attempts_total",
    "event_relay_results_produced_total",
    "event_relay_unrouted_total",
    "event_relay_offsets_committed_total",
    "event_relay_parked_total",
    "event_relay_redriven_total",
    "event_relay_config_reloads_total",
    "event_relay_transform_skipped_total",
    "event_relay_transform_errors_total",
    "event_relay_auth_token_refreshes_total",
    "event_relay_tap_dropped_total",
];
const GAUGES: &[&str] = &[
    "event_relay_in_flight_events",
    "event_relay_in_flight_bytes",
    "event_relay_backpressure_paused",
    "event_relay_consumer_lag",
    "event_relay_circuit_open",
    "event_relay_build_info",
    "event_relay_target_queued_events",
    "event_relay_tier_lag",
    "event_relay_config_info",
    "event_relay_tap_clients",
];
const HISTOGRAMS: &[&str] = &[
    "event_relay_delivery_duration_seconds",
    "event_relay_request_duration_seconds",
    "event_relay_batch_size",
];

/// The port of `server.listen` in containers (`0.0.0.0:9464`).
const METRICS_PORT: u16 = 9464;
const LIVENESS_PATH: &str = "/healthz";
const READINESS_PATH: &str = "/readyz";

// ---------------------------------------------------------------- helpers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    parse_yaml(rel, &read(rel))
}

fn parse_yaml(name: &str, text: &str) -> Value {
    serde_norway::from_str::<Value>(text).unwrap_or_else(|e| panic!("{name}: invalid YAML: {e}"))
}

/// The documents of a multi-document YAML stream (split on `---` lines).
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut docs = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, docs: &mut Vec<Value>| {
        let doc = parse_yaml(rel, current);
        if !doc.is_null() {
            docs.push(doc);
        }
        current.clear();
    };
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut current, &mut docs);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current, &mut docs);
    docs
}

/// Every .yml/.yaml file under `dir` (relative to the repo root), sorted.
fn yaml_files_under(dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root().join(dir), &mut paths);
    let mut rel: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    rel.sort();
    rel
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The port of an address such as `0.0.0.0:9464`, `[::]:9464` or `relay:9464`.
fn port_of(addr: &str) -> Option<u16> {
    addr.trim().rsplit_once(':')?.1.parse().ok()
}

/// Every `event_relay_*` identifier in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("event_relay_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// The exported metric a series name belongs to, if any.
fn known_metric(series: &str) -> Option<&'static str> {
    if let Some(m) = COUNTERS
        .iter()
        .chain(GAUGES)
        .chain(HISTOGRAMS)
        .find(|m| **m == series)
    {
        return Some(m);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix) {
            if let Some(m) = HISTOGRAMS.iter().find(|m| **m == base) {
                return Some(m);
            }
        }
    }
    None
}

fn unknown_metrics(file: &str, text: &str) -> Vec<String> {
    metric_names(text)
        .into_iter()
        .filter(|n| known_metric(n).is_none())
        .map(|n| format!("{file}: `{n}` is not a metric event-relay exports"))
        .collect()
}

// ---------------------------------------------------------------- docker-compose

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose
        .get("services")
        .and_then(Value::as_object)
        .expect("docker-compose.yml: no `services` mapping")
}

/// The service built from deploy/Dockerfile (the relay).
fn relay_service(compose: &Value) -> (String, Value) {
    let built: Vec<_> = services(compose)
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    assert_eq!(
        built.len(),
        1,
        "docker-compose.yml: expected exactly one service with `build` (the relay)"
    );
    built.into_iter().next().unwrap()
}

fn env_map(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match service.get("environment") {
        Some(Value::Object(map)) => {
            for (k, v) in map {
                env.insert(k.clone(), str_of(v).unwrap_or_default());
            }
        }
        Some(Value::Array(list)) => {
            for item in list.iter().filter_map(Value::as_str) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    env
}

/// (host, container) pairs of a service's bind mounts whose host side is a path.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for volume in service
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match volume {
            Value::String(spec) => {
                let mut parts = spec.splitn(3, ':');
                let source = parts.next().unwrap_or_default();
                let target = parts.next().unwrap_or_default();
                if source.starts_with('.') || source.starts_with('/') {
                    mounts.push((source.to_string(), target.to_string()));
                }
            }
            Value::Object(long) if long.get("type").and_then(Value::as_str) == Some("bind") => {
                let source = long
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let target = long
                    .get("target")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                mounts.push((source.to_string(), target.to_string()));
            }
            _ => {}
        }
    }
    mounts
}

/// Container ports a service publishes.
fn published_container_ports(service: &Value) -> Vec<u16> {
    let mut ports = Vec::new();
    for port in service
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let container = match port {
            Value::Object(long) => long.get("target").and_then(str_of),
            other => str_of(other).map(|s| {
                let s = s.split('/').next().unwrap_or_default().to_string();
                s.rsplit(':').next().unwrap_or_default().to_string()
            }),
        };
        if let Some(p) = container.and_then(|p| p.parse().ok()) {
            ports.push(p);
        }
    }
    ports
}

#[test]
fn compose_depends_on_refers_to_defined_services() {
    let compose = compose();
    let services = services(&compose);
    let mut problems = Vec::new();
    for (name, service) in services {
        let deps: Vec<String> = match service.get("depends_on") {
            None => vec![],
            Some(Value::Array(list)) => list.iter().filter_map(str_of).collect(),
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(other) => {
                problems.push(format!("services.{name}.depends_on: unexpected {other}"));
                vec![]
            }
        };
        for dep in deps {
            if dep == *name {
                problems.push(format!("services.{name}.depends_on: depends on itself"));
            } else if !services.contains_key(&dep) {
                problems.push(format!(
                    "services.{name}.depends_on: unknown service `{dep}`"
                ));
            }
        }
    }
    for required in ["kafka", "kafka-init", "receiver", "prometheus", "grafana"] {
        if !services.contains_key(required) {
            problems.push(format!("services: no `{required}` service"));
        }
    }
    assert_no_problems("docker-compose.yml depends_on", problems);
}

#[test]
fn compose_bind_mounts_exist_in_repo() {
    let compose = compose();
    let mut problems = Vec::new();
    let mut count = 0;
    for (name, service) in services(&compose) {
        for (source, _) in bind_mounts(service) {
            count += 1;
            if source.starts_with('/') {
                problems.push(format!("services.{name}.volumes: `{source}` is an absolute host path; use ./ paths in the repo"));
            } else if !root().join(&source).exists() {
                problems.push(format!(
                    "services.{name}.volumes: `{source}` does not exist in the repo"
                ));
            }
        }
    }
    assert!(count > 0, "docker-compose.yml: no bind mounts found at all");
    assert_no_problems("docker-compose.yml bind mounts", problems);
}

#[test]
fn compose_relay_build_port_and_listen_agree() {
    let compose = compose();
    let (name, relay) = relay_service(&compose);
    let mut problems = Vec::new();

    // build: context + dockerfile exist
    let build = relay.get("build").unwrap();
    let (context, dockerfile) = match build {
        Value::String(ctx) => (ctx.clone(), "Dockerfile".to_string()),
        other => (
            other
                .get("context")
                .and_then(Value::as_str)
                .unwrap_or(".")
                .to_string(),
            other
                .get("dockerfile")
                .and_then(Value::as_str)
                .unwrap_or("Dockerfile")
                .to_string(),
        ),
    };
    let context_dir = root().join(&context);
    if !context_dir.is_dir() {
        problems.push(format!(
            "services.{name}.build.context: `{context}` is not a directory"
        ));
    }
    if !context_dir.join(&dockerfile).is_file() {
        problems.push(format!("services.{name}.build.dockerfile: `{dockerfile}` does not exist (relative to `{context}`)"));
    }
    if dockerfile != "deploy/Dockerfile" {
        problems.push(format!(
            "services.{name}.build.dockerfile: expected deploy/Dockerfile, got `{dockerfile}`"
        ));
    }

    // listen (env override) port == published port == METRICS_PORT
    let env = env_map(&relay);
    match env.get("EVENT_RELAY__SERVER__LISTEN") {
        None => problems.push(format!(
            "services.{name}.environment: no EVENT_RELAY__SERVER__LISTEN"
        )),
        Some(listen) => {
            if !listen.starts_with("0.0.0.0:") && !listen.starts_with("[::]:") {
                problems.push(format!(
                    "services.{name}: listen `{listen}` is not reachable from other containers"
                ));
            }
            match port_of(listen) {
                Some(port) if port == METRICS_PORT => {
                    if !published_container_ports(&relay).contains(&port) {
                        problems.push(format!(
                            "services.{name}.ports: does not publish the listen port {port}"
                        ));
                    }
                }
                other => problems.push(format!(
                    "services.{name}: listen `{listen}` port {other:?}, expected {METRICS_PORT}"
                )),
            }
        }
    }

    // brokers point at the kafka service's internal listener
    let services = services(&compose);
    match env.get("EVENT_RELAY__KAFKA__BROKERS") {
        None => problems.push(format!(
            "services.{name}.environment: no EVENT_RELAY__KAFKA__BROKERS"
        )),
        Some(brokers) => {
            for broker in brokers.split(',') {
                let host = broker
                    .trim()
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(broker);
                if !services.contains_key(host) {
                    problems.push(format!(
                        "services.{name}: broker `{broker}` is not a compose service"
                    ));
                }
            }
            if let Some(kafka_env) = services.get("kafka").map(env_map) {
                let advertised = kafka_env
                    .get("KAFKA_ADVERTISED_LISTENERS")
                    .cloned()
                    .unwrap_or_default();
                for broker in brokers.split(',') {
                    if !advertised.contains(&format!("//{}", broker.trim())) {
                        problems.push(format!("services.kafka: KAFKA_ADVERTISED_LISTENERS `{advertised}` does not advertise `{broker}`"));
                    }
                }
            }
        }
    }

    // the config is mounted where the Dockerfile's CMD reads it
    if !bind_mounts(&relay)
        .iter()
        .any(|(s, t)| s == "./config/example.toml" && t == "/etc/event-relay/config.toml")
    {
        problems.push(format!("services.{name}.volumes: ./config/example.toml is not mounted at /etc/event-relay/config.toml"));
    }

    // ${VAR} references of the mounted config are provided (only checkable once the file exists)
    if let Ok(config) = fs::read_to_string(root().join("config/example.toml")) {
        for var in env_references(&config) {
            if !env.contains_key(&var) {
                problems.push(format!("services.{name}.environment: config/example.toml uses ${{{var}}} but compose does not set it"));
            }
        }
    }
    assert_no_problems("docker-compose.yml relay", problems);
}

/// `${VAR}` names referenced in a text (comment lines skipped).
fn env_references(text: &str) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    let name = name.split(":-").next().unwrap_or(name);
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        vars.insert(name.to_string());
                    }
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    vars
}

#[test]
fn prometheus_scrapes_the_relay_service_and_loads_mounted_rules() {
    let compose = compose();
    let (relay_name, _) = relay_service(&compose);
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let mut problems = Vec::new();

    let targets: Vec<String> = prom
        .get("scrape_configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|job| {
            job.get("static_configs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| {
            sc.get("targets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    let expected = format!("{relay_name}:{METRICS_PORT}");
    if !targets.contains(&expected) {
        problems.push(format!(
            "prometheus.yml: no scrape target `{expected}` (targets: {targets:?})"
        ));
    }
    for target in &targets {
        let host = target.rsplit_once(':').map(|(h, _)| h).unwrap_or(target);
        if host != "localhost" && !services(&compose).contains_key(host) {
            problems.push(format!(
                "prometheus.yml: target `{target}` is not a compose service"
            ));
        }
    }

    // rule files exist beside prometheus.yml and are mounted beside the mounted config
    let prom_service = services(&compose)
        .get("prometheus")
        .cloned()
        .unwrap_or(Value::Null);
    let mounts = bind_mounts(&prom_service);
    let config_target = mounts
        .iter()
        .find(|(s, _)| s.trim_start_matches("./") == "deploy/prometheus/prometheus.yml")
        .map(|(_, t)| t.clone());
    if config_target.is_none() {
        problems
            .push("services.prometheus: deploy/prometheus/prometheus.yml is not mounted".into());
    }
    let rule_files: Vec<String> = prom
        .get("rule_files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if rule_files.is_empty() {
        problems.push("prometheus.yml: no rule_files".into());
    }
    for rule_file in &rule_files {
        if !root().join("deploy/prometheus").join(rule_file).is_file() {
            problems.push(format!(
                "prometheus.yml: rule file `{rule_file}` not in deploy/prometheus/"
            ));
        }
        if let Some(config_target) = &config_target {
            let dir = config_target.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let want = if rule_file.starts_with('/') {
                rule_file.clone()
            } else {
                format!("{dir}/{rule_file}")
            };
            if !mounts.iter().any(|(_, t)| *t == want) {
                problems.push(format!(
                    "services.prometheus: rule file `{rule_file}` is not mounted at {want}"
                ));
            }
        }
    }
    assert_no_problems("prometheus", problems);
}

#[test]
fn grafana_provisioning_points_at_the_mounted_dashboard() {
    let compose = compose();
    let grafana = services(&compose)
        .get("grafana")
        .cloned()
        .expect("no grafana service");
    let mounts = bind_mounts(&grafana);
    let mut problems = Vec::new();
    let dashboard_target = mounts
        .iter()
        .find(|(s, _)| s.trim_start_matches("./") == "deploy/grafana/event-relay.json")
        .map(|(_, t)| t.clone());
    match &dashboard_target {
        None => {
            problems.push("services.grafana: deploy/grafana/event-relay.json is not mounted".into())
        }
        Some(target) => {
            let mut found = false;
            for file in yaml_files_under("deploy/grafana/provisioning/dashboards") {
                let doc = yaml(&file);
                for provider in doc
                    .get("providers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(path) = provider.pointer("/options/path").and_then(Value::as_str) {
                        if target.starts_with(&format!("{}/", path.trim_end_matches('/')))
                            || target == path
                        {
                            found = true;
                        }
                    }
                }
            }
            if !found {
                problems.push(format!(
                    "grafana provisioning: no dashboard provider path covers {target}"
                ));
            }
        }
    }
    if !mounts.iter().any(|(s, t)| {
        s.trim_start_matches("./").trim_end_matches('/') == "deploy/grafana/provisioning"
            && t.trim_end_matches('/') == "/etc/grafana/provisioning"
    }) {
        problems.push("services.grafana: deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning".into());
    }
    let mut datasource_ok = false;
    for file in yaml_files_under("deploy/grafana/provisioning/datasources") {
        for ds in yaml(&file)
            .get("datasources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let url = ds.get("url").and_then(Value::as_str).unwrap_or_default();
            let port = services(&compose)
                .get("prometheus")
                .map(published_container_ports)
                .unwrap_or_default();
            if ds.get("type").and_then(Value::as_str) == Some("prometheus")
                && url.trim_end_matches('/')
                    == format!(
                        "http://prometheus:{}",
                        port.first().copied().unwrap_or(9090)
                    )
            {
                datasource_ok = true;
            }
        }
    }
    if !datasource_ok {
        problems.push(
            "grafana provisioning: no Prometheus datasource at http://prometheus:<its port>".into(),
        );
    }
    let env = env_map(&grafana);
    if env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str) != Some("true") {
        problems.push("services.grafana: anonymous access is not enabled".into());
    }
    assert_no_problems("grafana provisioning", problems);
}

// ---------------------------------------------------------------- Dockerfile

/// Dockerfile instructions as (KEYWORD, arguments), continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // comment inside a continued instruction
        }
        if let Some(stripped) = trimmed.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

fn dockerignore_patterns() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn dockerfile_is_consistent_with_repo_and_port() {
    let text = read("deploy/Dockerfile");
    let instructions = dockerfile_instructions(&text);
    let ignored = dockerignore_patterns();
    let mut problems = Vec::new();

    let froms = instructions.iter().filter(|(k, _)| k == "FROM").count();
    if froms < 2 {
        problems.push(format!("expected a multi-stage build, found {froms} FROM"));
    }
    let mut exposed = Vec::new();
    let mut user = None;
    let mut saw_example_config = false;
    for (keyword, args) in &instructions {
        match keyword.as_str() {
            "COPY" | "ADD" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                if words.iter().any(|w| w.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                if let Some((_dest, sources)) = paths.split_last() {
                    for source in sources {
                        let source = source.trim_end_matches('/');
                        if source == "config/example.toml" {
                            saw_example_config = true;
                        }
                        if !root().join(source).exists() {
                            problems.push(format!(
                                "COPY {source}: not in the build context (repo root)"
                            ));
                        }
                        if let Some(p) = ignored
                            .iter()
                            .find(|p| source == p.as_str() || source.starts_with(&format!("{p}/")))
                        {
                            problems.push(format!(
                                "COPY {source}: excluded by .dockerignore pattern `{p}`"
                            ));
                        }
                    }
                }
            }
            "EXPOSE" => exposed.extend(
                args.split_whitespace()
                    .filter_map(|p| p.split('/').next()?.parse::<u16>().ok()),
            ),
            "USER" => user = Some(args.clone()),
            "ENV" => {
                for pair in args.split_whitespace() {
                    if let Some(listen) = pair.strip_prefix("EVENT_RELAY__SERVER__LISTEN=") {
                        if port_of(listen) != Some(METRICS_PORT) {
                            problems.push(format!("ENV EVENT_RELAY__SERVER__LISTEN={listen}: port is not {METRICS_PORT}"));
                        }
                    }
                }
            }
            "HEALTHCHECK"
                if !args.contains(&METRICS_PORT.to_string()) || !args.contains(LIVENESS_PATH) =>
            {
                problems.push(format!(
                    "HEALTHCHECK does not probe {LIVENESS_PATH} on port {METRICS_PORT}"
                ));
            }
            _ => {}
        }
    }
    if !saw_example_config {
        problems.push("the image does not COPY config/example.toml".into());
    }
    if !exposed.contains(&METRICS_PORT) {
        problems.push(format!(
            "EXPOSE {exposed:?} does not include {METRICS_PORT}"
        ));
    }
    match user.as_deref() {
        None => problems.push("no USER: the runtime image would run as root".into()),
        Some(u) if u == "root" || u == "0" || u.starts_with("0:") || u.starts_with("root:") => {
            problems.push(format!("USER {u} is root"))
        }
        _ => {}
    }
    if !instructions.iter().any(|(k, _)| k == "HEALTHCHECK") {
        problems.push("no HEALTHCHECK".into());
    }
    if !instructions
        .iter()
        .any(|(k, a)| k == "ENTRYPOINT" && a.contains("event-relay"))
    {
        problems.push("ENTRYPOINT is not event-relay".into());
    }
    if !instructions
        .iter()
        .any(|(k, a)| k == "CMD" && a.contains("/etc/event-relay/config.toml"))
    {
        problems.push("CMD does not run with /etc/event-relay/config.toml".into());
    }
    if !instructions
        .iter()
        .any(|(k, a)| k == "RUN" && a.contains("--locked"))
    {
        problems.push("the release build is not `--locked`".into());
    }
    assert_no_problems("deploy/Dockerfile", problems);
}

/// Repo-relative paths of files that `src/` embeds with `include_str!` / `include_bytes!`.
fn embedded_files() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    walk(&root().join("src"), &mut sources);
    let mut files = BTreeSet::new();
    for source in sources {
        let text = fs::read_to_string(&source).unwrap_or_default();
        let dir = source
            .parent()
            .unwrap()
            .strip_prefix(root())
            .unwrap()
            .to_path_buf();
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (pos, _) in text.match_indices(macro_name) {
                let rest = &text[pos + macro_name.len()..];
                let Some(end) = rest.find('"') else { continue };
                // Normalize `dir/../x/y` to `x/y`.
                let mut parts: Vec<String> = Vec::new();
                for comp in dir.join(&rest[..end]).components() {
                    match comp.as_os_str().to_str().unwrap_or_default() {
                        ".." => {
                            parts.pop();
                        }
                        "." | "" => {}
                        other => parts.push(other.to_string()),
                    }
                }
                files.insert(parts.join("/"));
            }
        }
    }
    files
}

#[test]
fn dockerfile_copies_every_file_the_build_embeds() {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let copied: Vec<String> = instructions
        .iter()
        .filter(|(k, a)| k == "COPY" && !a.contains("--from"))
        .flat_map(|(_, a)| {
            let words: Vec<String> = a
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .map(|w| w.trim_start_matches("./").trim_end_matches('/').to_string())
                .collect();
            words[..words.len().saturating_sub(1)].to_vec()
        })
        .collect();
    let mut problems = Vec::new();
    if root().join("build.rs").exists() && !copied.iter().any(|c| c == "build.rs") {
        problems.push("the package has a build.rs but the Dockerfile does not COPY it".into());
    }
    for file in embedded_files() {
        let covered = copied
            .iter()
            .any(|c| file == *c || file.starts_with(&format!("{c}/")));
        if !covered {
            problems.push(format!(
                "src/ embeds `{file}` but the Dockerfile does not COPY it"
            ));
        }
    }
    assert_no_problems("deploy/Dockerfile", problems);
}

#[test]
fn dockerignore_excludes_build_output_and_vcs() {
    let patterns = dockerignore_patterns();
    let mut problems = Vec::new();
    for required in ["target", ".git", ".venv"] {
        if !patterns.iter().any(|p| p == required) {
            problems.push(format!(".dockerignore does not exclude {required}/"));
        }
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src", "config"] {
        if patterns.iter().any(|p| p == needed) {
            problems.push(format!(
                ".dockerignore excludes {needed}, which the image build needs"
            ));
        }
    }
    assert_no_problems(".dockerignore", problems);
}

// ---------------------------------------------------------------- Kubernetes

/// The pod spec of a workload document, if it is one.
fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc.get("kind")?.as_str()? {
        "Pod" => doc.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.pointer("/spec/template/spec")
        }
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn pod_labels(doc: &Value) -> serde_json::Map<String, Value> {
    doc.pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn is_relay(container: &Value) -> bool {
    container
        .get("image")
        .and_then(Value::as_str)
        .is_some_and(|i| i.contains("event-relay"))
}

fn labels_match(
    selector: &serde_json::Map<String, Value>,
    labels: &serde_json::Map<String, Value>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The numeric port a probe/Service port refers to (a number or a container port name).
fn resolve_port(port: &Value, container: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64(),
        Value::String(name) => name.parse().ok().or_else(|| {
            container
                .get("ports")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
                .get("containerPort")?
                .as_u64()
        }),
        _ => None,
    }
}

fn kind_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc.get("kind").and_then(Value::as_str).unwrap_or("?"),
        doc.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

fn check_relay_container(at: &str, pod: &Value, c: &Value, problems: &mut Vec<String>) {
    for (probe, want) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
        ("startupProbe", LIVENESS_PATH),
    ] {
        let Some(p) = c.get(probe) else {
            if probe != "startupProbe" {
                problems.push(format!("{at}: no {probe}"));
            }
            continue;
        };
        let path = p.pointer("/httpGet/path").and_then(Value::as_str);
        if path != Some(want) {
            problems.push(format!("{at}.{probe}: path {path:?}, expected {want}"));
        }
        let port = p.pointer("/httpGet/port").and_then(|v| resolve_port(v, c));
        if port != Some(u64::from(METRICS_PORT)) {
            problems.push(format!(
                "{at}.{probe}: port {port:?}, expected {METRICS_PORT}"
            ));
        }
    }
    let ports: Vec<u64> = c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
        .collect();
    if !ports.contains(&u64::from(METRICS_PORT)) {
        problems.push(format!("{at}: no containerPort {METRICS_PORT}"));
    }
    for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        if env.get("name").and_then(Value::as_str) == Some("EVENT_RELAY__SERVER__LISTEN") {
            let value = env.get("value").and_then(Value::as_str).unwrap_or_default();
            if port_of(value) != Some(METRICS_PORT)
                || value.starts_with("127.")
                || value.starts_with("localhost")
            {
                problems.push(format!("{at}: EVENT_RELAY__SERVER__LISTEN `{value}` is not reachable by the kubelet on port {METRICS_PORT}"));
            }
        }
    }
    for key in [
        "/resources/requests/cpu",
        "/resources/requests/memory",
        "/resources/limits/memory",
    ] {
        if c.pointer(key).is_none() {
            problems.push(format!(
                "{at}: no {}",
                key.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
    let flag = |key: &str| {
        c.pointer(&format!("/securityContext/{key}"))
            .or_else(|| pod.pointer(&format!("/securityContext/{key}")))
    };
    if flag("runAsNonRoot") != Some(&Value::Bool(true)) {
        problems.push(format!("{at}: securityContext.runAsNonRoot is not true"));
    }
    if c.pointer("/securityContext/readOnlyRootFilesystem") != Some(&Value::Bool(true)) {
        problems.push(format!(
            "{at}: securityContext.readOnlyRootFilesystem is not true"
        ));
    }
    if c.pointer("/securityContext/allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
        problems.push(format!(
            "{at}: securityContext.allowPrivilegeEscalation is not false"
        ));
    }
}

/// `listen = "..."` lines of TOML embedded in ConfigMaps.
fn toml_listen_values(toml: &str) -> Vec<String> {
    toml.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("listen"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| {
            v.split('#')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}

#[test]
fn every_deploy_yaml_parses() {
    let files = yaml_files_under("deploy");
    assert!(
        files.len() >= 7,
        "expected the compose-side and Kubernetes YAML under deploy/, found {files:?}"
    );
    for file in files {
        let docs = yaml_docs(&file);
        assert!(!docs.is_empty(), "{file}: no YAML document");
    }
}

#[test]
fn kubernetes_manifests_probe_the_relay_on_its_port() {
    let mut problems = Vec::new();
    let mut all_docs = Vec::new();
    for file in yaml_files_under("deploy") {
        for doc in yaml_docs(&file) {
            all_docs.push((file.clone(), doc));
        }
    }
    let mut relay_containers = 0;
    let mut workloads_per_file: BTreeMap<String, usize> = BTreeMap::new();
    for (file, doc) in &all_docs {
        let Some(spec) = pod_spec(doc) else { continue };
        let at_doc = format!("{file}: {}", kind_name(doc));
        *workloads_per_file.entry(file.clone()).or_default() += 1;
        let same_file = |kind: &str, name: &str| {
            all_docs.iter().any(|(f, d)| {
                f == file
                    && d.get("kind").and_then(Value::as_str) == Some(kind)
                    && d.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            })
        };
        let relays: Vec<&Value> = containers(spec)
            .into_iter()
            .filter(|c| is_relay(c))
            .collect();
        if relays.is_empty() {
            problems.push(format!("{at_doc}: no event-relay container"));
        }
        for c in relays {
            relay_containers += 1;
            let at = format!(
                "{at_doc} container {}",
                c.get("name").and_then(Value::as_str).unwrap_or("?")
            );
            check_relay_container(&at, spec, c, &mut problems);
            // Secrets referenced by the relay exist in the same file unless optional.
            for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = env.pointer("/valueFrom/secretKeyRef") {
                    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                    let optional = r.get("optional") == Some(&Value::Bool(true));
                    if !optional && !same_file("Secret", name) {
                        problems.push(format!(
                            "{at}: secretKeyRef `{name}` is not defined in {file}"
                        ));
                    }
                    if let (Some(key), Some(secret)) = (
                        r.get("key").and_then(Value::as_str),
                        all_docs
                            .iter()
                            .find(|(f, d)| f == file && kind_name(d) == format!("Secret/{name}")),
                    ) {
                        let has = secret
                            .1
                            .pointer(&format!("/stringData/{key}"))
                            .or_else(|| secret.1.pointer(&format!("/data/{key}")));
                        if has.is_none() && !optional {
                            problems.push(format!("{at}: Secret `{name}` has no key `{key}`"));
                        }
                    }
                }
            }
            for from in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = from.get("secretRef") {
                    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                    if r.get("optional") != Some(&Value::Bool(true)) && !same_file("Secret", name) {
                        problems.push(format!(
                            "{at}: envFrom secretRef `{name}` is not defined in {file}"
                        ));
                    }
                }
            }
            let mounts: Vec<&str> = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|m| m.get("mountPath").and_then(Value::as_str) == Some("/etc/event-relay"))
                .filter_map(|m| m.get("name").and_then(Value::as_str))
                .collect();
            if mounts.is_empty() {
                problems.push(format!("{at}: no volume mounted at /etc/event-relay"));
            }
            for volume_name in mounts {
                let volume = spec
                    .get("volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(volume_name));
                match volume
                    .and_then(|v| v.pointer("/configMap/name"))
                    .and_then(Value::as_str)
                {
                    None => problems.push(format!(
                        "{at}: volume `{volume_name}` is not a ConfigMap volume"
                    )),
                    Some(cm) => match all_docs
                        .iter()
                        .find(|(f, d)| f == file && kind_name(d) == format!("ConfigMap/{cm}"))
                    {
                        None => problems
                            .push(format!("{at}: ConfigMap `{cm}` is not defined in {file}")),
                        Some((_, cm_doc)) => {
                            match cm_doc.pointer("/data/config.toml").and_then(Value::as_str) {
                                None => problems
                                    .push(format!("{file}: ConfigMap/{cm} has no config.toml")),
                                Some(toml) => {
                                    for listen in toml_listen_values(toml) {
                                        if port_of(&listen) != Some(METRICS_PORT) {
                                            problems.push(format!("{file}: ConfigMap/{cm} listen `{listen}` is not port {METRICS_PORT}"));
                                        }
                                    }
                                }
                            }
                        }
                    },
                }
            }
        }
    }
    if relay_containers < 2 {
        problems.push(format!("expected relay containers in sidecar.yaml and standalone.yaml, found {relay_containers}"));
    }
    // The sidecar Deployment has the app beside the relay; standalone scales out.
    for (file, doc) in &all_docs {
        let Some(spec) = pod_spec(doc) else { continue };
        if file.ends_with("kubernetes/sidecar.yaml")
            && containers(spec).iter().filter(|c| !is_relay(c)).count() == 0
        {
            problems.push(format!(
                "{file}: {} has no application container beside the relay",
                kind_name(doc)
            ));
        }
        if file.ends_with("kubernetes/standalone.yaml")
            && doc
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                < 2
        {
            problems.push(format!(
                "{file}: {} should run several replicas in one consumer group",
                kind_name(doc)
            ));
        }
    }
    for required in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/standalone.yaml",
    ] {
        if !workloads_per_file.contains_key(required) {
            problems.push(format!("{required}: no workload"));
        }
    }
    assert_no_problems("Kubernetes manifests", problems);
}

#[test]
fn kubernetes_services_and_monitors_select_relay_pods() {
    let mut docs = Vec::new();
    for file in yaml_files_under("deploy/kubernetes") {
        docs.extend(yaml_docs(&file));
    }
    let workloads: Vec<&Value> = docs.iter().filter(|d| pod_spec(d).is_some()).collect();
    let services: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Service"))
        .collect();
    let mut problems = Vec::new();

    // Services select relay pods and their ports reach 9464.
    for svc in &services {
        let at = kind_name(svc);
        let selector = svc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(w) = workloads
            .iter()
            .find(|w| labels_match(&selector, &pod_labels(w)))
        else {
            problems.push(format!(
                "{at}: selector {selector:?} matches no pod template"
            ));
            continue;
        };
        let relay = containers(pod_spec(w).unwrap())
            .into_iter()
            .find(|c| is_relay(c));
        for port in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let target = port
                .get("targetPort")
                .or_else(|| port.get("port"))
                .cloned()
                .unwrap_or(Value::Null);
            if relay.and_then(|c| resolve_port(&target, c)) != Some(u64::from(METRICS_PORT)) {
                problems.push(format!(
                    "{at}: port {} does not reach containerPort {METRICS_PORT}",
                    port
                ));
            }
        }
    }

    let mut monitors = 0;
    for doc in &docs {
        let at = kind_name(doc);
        let selector = doc
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match doc.get("kind").and_then(Value::as_str) {
            Some("PodMonitor") => {
                monitors += 1;
                let candidates: Vec<&&Value> = workloads
                    .iter()
                    .filter(|w| labels_match(&selector, &pod_labels(w)))
                    .collect();
                if candidates.is_empty() {
                    problems.push(format!(
                        "{at}: selector {selector:?} matches no pod template"
                    ));
                }
                for ep in doc
                    .pointer("/spec/podMetricsEndpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let port = ep.get("port").cloned().unwrap_or(Value::Null);
                    for w in &candidates {
                        let ok = containers(pod_spec(w).unwrap())
                            .into_iter()
                            .filter(|c| is_relay(c))
                            .any(|c| resolve_port(&port, c) == Some(u64::from(METRICS_PORT)));
                        if !ok {
                            problems.push(format!("{at}: endpoint port {port} is not the relay's {METRICS_PORT} in {}", kind_name(w)));
                        }
                    }
                    if ep.get("path").and_then(Value::as_str).unwrap_or("/metrics") != "/metrics" {
                        problems.push(format!("{at}: endpoint path is not /metrics"));
                    }
                }
            }
            Some("ServiceMonitor") => {
                monitors += 1;
                let matched: Vec<&&Value> = services
                    .iter()
                    .filter(|s| {
                        labels_match(
                            &selector,
                            s.pointer("/metadata/labels")
                                .and_then(Value::as_object)
                                .unwrap_or(&Default::default()),
                        )
                    })
                    .collect();
                if matched.is_empty() {
                    problems.push(format!("{at}: selector {selector:?} matches no Service"));
                }
                for ep in doc
                    .pointer("/spec/endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let port = ep.get("port").and_then(Value::as_str).unwrap_or_default();
                    for s in &matched {
                        let has = s
                            .pointer("/spec/ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .any(|p| p.get("name").and_then(Value::as_str) == Some(port));
                        if !has {
                            problems.push(format!(
                                "{at}: endpoint port `{port}` is not a port name of {}",
                                kind_name(s)
                            ));
                        }
                    }
                    if ep.get("path").and_then(Value::as_str).unwrap_or("/metrics") != "/metrics" {
                        problems.push(format!("{at}: endpoint path is not /metrics"));
                    }
                }
            }
            _ => {}
        }
    }
    if monitors == 0 {
        problems.push("deploy/kubernetes: no PodMonitor or ServiceMonitor".into());
    }
    assert_no_problems("Kubernetes services and monitors", problems);
}

// ---------------------------------------------------------------- dashboards and alerts

#[test]
fn grafana_dashboard_uses_only_exported_metrics_and_charts_them_all() {
    let text = read("deploy/grafana/event-relay.json");
    let dash: Value =
        serde_json::from_str(&text).expect("deploy/grafana/event-relay.json: invalid JSON");
    let mut problems = unknown_metrics("event-relay.json", &text);
    if dash.get("uid").and_then(Value::as_str) != Some("event-relay") {
        problems.push("uid is not \"event-relay\"".into());
    }
    if dash
        .get("schemaVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        < 36
    {
        problems.push("schemaVersion is older than 36".into());
    }
    let panels = dash
        .get("panels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in &panels {
        let id = panel.get("id").and_then(Value::as_u64);
        if !id.is_some_and(|id| ids.insert(id)) {
            problems.push(format!(
                "panel {:?}: missing or duplicate id {id:?}",
                panel.get("title")
            ));
        }
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match target.get("expr").and_then(Value::as_str) {
                Some(expr) if !expr.trim().is_empty() => exprs.push(expr.to_string()),
                _ => problems.push(format!(
                    "panel {:?}: target without expr",
                    panel.get("title")
                )),
            }
        }
        if panel.get("type").and_then(Value::as_str) != Some("row")
            && panel.get("gridPos").is_none()
        {
            problems.push(format!("panel {:?}: no gridPos", panel.get("title")));
        }
    }
    let used: BTreeSet<&str> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter_map(|n| known_metric(&n))
        .collect();
    for metric in COUNTERS.iter().chain(GAUGES).chain(HISTOGRAMS) {
        if !used.contains(metric) {
            problems.push(format!("no panel charts {metric}"));
        }
    }
    for histogram in HISTOGRAMS {
        let quantiles = exprs.iter().any(|e| {
            e.contains("histogram_quantile") && e.contains(&format!("{histogram}_bucket"))
        });
        if !quantiles {
            problems.push(format!("no histogram_quantile over {histogram}_bucket"));
        }
    }
    assert_no_problems("deploy/grafana/event-relay.json", problems);
}

#[test]
fn alert_rules_use_only_exported_metrics_and_cover_the_failure_modes() {
    let mut problems = Vec::new();
    let rules_text = read("deploy/prometheus/alerts.yml");
    problems.extend(unknown_metrics("alerts.yml", &rules_text));
    if let Ok(tests) = fs::read_to_string(root().join("deploy/prometheus/alerts.test.yml")) {
        problems.extend(unknown_metrics("alerts.test.yml", &tests));
    }
    let rules = parse_yaml("alerts.yml", &rules_text);
    let mut exprs: Vec<String> = Vec::new();
    let mut names = BTreeSet::new();
    for group in rules
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for rule in group
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = rule
                .get("alert")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let expr = rule
                .get("expr")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if expr.trim().is_empty() {
                problems.push(format!("{name}: no expr"));
            }
            if rule
                .pointer("/labels/severity")
                .and_then(Value::as_str)
                .is_none()
            {
                problems.push(format!("{name}: no severity label"));
            }
            if rule
                .pointer("/annotations/summary")
                .and_then(Value::as_str)
                .is_none()
            {
                problems.push(format!("{name}: no summary annotation"));
            }
            if !names.insert(name.clone()) {
                problems.push(format!("{name}: duplicate alert name"));
            }
            exprs.push(expr);
        }
    }
    // lag, dead letters, a target's errors, circuit, no consumption, relay down, a growing
    // retry tier, final failures (each one a record in the failed topic with tiers on)
    let covers = |needles: &[&str]| exprs.iter().any(|e| needles.iter().all(|n| e.contains(n)));
    for (what, needles) in [
        ("consumer lag", &["event_relay_consumer_lag"][..]),
        ("lag growing", &["deriv(event_relay_consumer_lag"][..]),
        ("dead letters", &["event_relay_dead_letters_total"][..]),
        (
            "a target's error ratio",
            &[
                "event_relay_deliveries_total",
                "outcome=\"error\"",
                "by (target)",
            ][..],
        ),
        ("circuit open", &["event_relay_circuit_open"][..]),
        (
            "no consumption while lag > 0",
            &[
                "event_relay_messages_consumed_total",
                "event_relay_consumer_lag",
            ][..],
        ),
        ("relay down", &["up{"][..]),
        ("a retry tier growing", &["deriv(event_relay_tier_lag"][..]),
        (
            "records written to the failed topic",
            &["increase(event_relay_deliveries_total", "outcome=\"error\""][..],
        ),
    ] {
        if !covers(needles) {
            problems.push(format!(
                "no alert covers {what} (an expr containing {needles:?})"
            ));
        }
    }
    // The `up` job matcher must match the compose scrape job.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let relay_job = prom
        .get("scrape_configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|j| {
            j.get("static_configs")
                .is_some_and(|s| s.to_string().contains(&format!(":{METRICS_PORT}\"")))
        })
        .and_then(|j| j.get("job_name").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    if !exprs.iter().any(|e| {
        e.contains("up{")
            && (e.contains(&format!("job=\"{relay_job}\""))
                || e.contains(&format!(".*{relay_job}.*")))
    }) {
        problems.push(format!(
            "the relay-down alert does not select the scrape job `{relay_job}`"
        ));
    }
    assert_no_problems("deploy/prometheus/alerts.yml", problems);
}

#[test]
fn metric_name_scanner_and_catalog_work() {
    let names = metric_names(
        "rate(event_relay_batch_size_bucket[5m]) / x_event_relay_no + event_relay_unrouted_total",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![
            "event_relay_batch_size_bucket".to_string(),
            "event_relay_unrouted_total".to_string()
        ]
    );
    assert_eq!(
        known_metric("event_relay_batch_size_bucket"),
        Some("event_relay_batch_size")
    );
    assert_eq!(known_metric("event_relay_consumer_lag_bucket"), None);
    assert_eq!(known_metric("event_relay_deliveries"), None);
    assert_eq!(port_of("0.0.0.0:9464"), Some(9464));
    assert_eq!(port_of("[::]:9464"), Some(9464));
}

/// The list above is exactly what `src/metrics.rs` defines (plus the normalizer's internal
/// timing histogram), so dashboards and alerts are checked against the code.
#[test]
fn metric_list_matches_the_code() {
    let src =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs")).unwrap();
    let mut in_code: Vec<String> = src
        .split('"')
        .filter(|s| {
            s.starts_with("event_relay_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(String::from)
        .collect();
    in_code.sort();
    in_code.dedup();
    let mut listed: Vec<String> = COUNTERS
        .iter()
        .chain(GAUGES)
        .chain(HISTOGRAMS)
        .map(|s| s.to_string())
        .chain(["event_relay_normalize_duration_seconds".to_string()])
        .collect();
    listed.sort();
    assert_eq!(in_code, listed);
}
