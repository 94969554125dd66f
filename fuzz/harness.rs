//! The fuzz harnesses, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and the replay of
//! saved crashers in `tests/fuzz_regressions.rs`, so a regression file runs through exactly the
//! code path that found it. Only `event_relay` and crates the main package depends on too
//! (`serde_json`, `url`, `uuid`, `chrono`) are used.
//!
//! Under libFuzzer a panic aborts the process from the panic hook, before any `catch_unwind`
//! (the relay's own, around VRL's runtime, included) can catch it; the replay in
//! `tests/it/fuzz_regressions.rs` has no such hook, so where the relay catches a panic itself the
//! harness turns the caught panic back into one (see [`transform`]).
//!
//! A harness returns normally for every input; a panic (or an allocation above libFuzzer's
//! `-malloc_limit_mb`) is a finding.
#![allow(dead_code)]

use event_relay::config::{self, Config, EventNames, SourceFormat, UnknownEvents, ValidationMode};
use event_relay::deliver::posthog;
use event_relay::deliver::template::Template;
use event_relay::envelope::{Envelope, Origin};
use event_relay::normalize::{NormalizeError, Normalizer, SourceSettings};
use event_relay::report::{result_event, Failure, Outcome, TargetRef};
use event_relay::route::Router;
use event_relay::transform::{self, Outcome as Shaped, Spec, TransformFailure};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// `max_message_bytes` of the small-limit variant.
pub const SMALL_LIMIT: usize = 64;
/// The relay's default `max_message_bytes`.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

/// The host of the templated webhook URL; no event field may change it.
const TEMPLATE_HOST: &str = "billing.example";

/// Everything built once per process.
struct Fixture {
    normalizer: Normalizer,
    router: Router,
    url: Template,
    header: Template,
}

/// The reference config plus one route per `where` operator, so every operator is evaluated
/// against fuzzed envelopes.
const EXTRA_ROUTES: &str = r#"
[[routes]]
name = "fuzz-gte"
where = [{ field = "properties.score", gte = 5 }]
targets = ["crm"]
[[routes]]
name = "fuzz-lt"
where = [{ field = "properties.duration", lt = -1e300 }]
targets = ["crm"]
[[routes]]
name = "fuzz-in"
where = [{ field = "properties.courseType", in = ["classroom", "demo", 1, true] }]
targets = ["crm"]
[[routes]]
name = "fuzz-not-in"
where = [{ field = "user.traits.optin", not_in = [false, "false"] }]
targets = ["crm"]
[[routes]]
name = "fuzz-matches"
where = [{ field = "user.email", matches = "^[^@]+@example\\.(com|org)$" }]
targets = ["crm"]
[[routes]]
name = "fuzz-exists"
where = [{ field = "site.id", exists = true }, { field = "session_id", exists = false }]
targets = ["crm"]
[[routes]]
name = "fuzz-equals"
where = [{ field = "validation.status", equals = "invalid" }, { field = "origin.offset", not_equals = 1 }]
events = ["*ed", "!?ard*", "exam_*"]
targets = ["crm"]
"#;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let text = format!("{}\n{EXTRA_ROUTES}", include_str!("../config/example.toml"));
        let env = [
            ("KAFKA_BROKERS", "localhost:9092"),
            ("POSTHOG_HOST", "https://posthog.example"),
            ("POSTHOG_API_KEY", "phc_fuzz"),
            ("CRM_WEBHOOK_URL", "https://crm.example/hook"),
            (
                "CRM_SIGNING_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("BILLING_WEBHOOK_URL", "https://billing.example"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config: Config = config::load_str(&text, env).expect("the fuzz config loads");
        let billing = config
            .targets
            .iter()
            .find(|t| t.name == "billing")
            .expect("billing target");
        Fixture {
            normalizer: Normalizer::builtin().expect("builtin catalogs"),
            router: Router::new(&config).expect("routes compile"),
            url: Template::parse(&billing.url),
            header: Template::parse("{{event}}/{{user.email}}/{{properties.courseType}}"),
        }
    })
}

/// The settings variants every input is normalized under, per format.
fn variants(format: SourceFormat) -> [SourceSettings; 3] {
    let strict = SourceSettings::standalone(format);
    let lenient = SourceSettings {
        site_id: Some("7c9e6679-7425-40de-944b-e07fc1f90ae7".into()),
        site_name: Some("fuzz".into()),
        validation: ValidationMode::Lenient,
        unknown_events: UnknownEvents::DeadLetter,
        max_message_bytes: DEFAULT_LIMIT,
        ..SourceSettings::standalone(format)
    };
    let small = SourceSettings {
        max_message_bytes: SMALL_LIMIT,
        ..SourceSettings::standalone(format)
    };
    [strict, lenient, small]
}

/// Raw message bytes through the normalizer under all three formats and every policy variant;
/// each envelope then through everything the relay derives from it (body, routes, templated
/// URL and headers, PostHog event, result event), each rejection through its dead-letter
/// headers.
pub fn normalize(data: &[u8]) {
    let f = fixture();
    let origin = Origin {
        topic: "fuzz".into(),
        partition: 0,
        offset: 7,
        key: Some("k".into()),
    };
    for format in [
        SourceFormat::Komo,
        SourceFormat::Acemate,
        SourceFormat::Auto,
    ] {
        for settings in variants(format) {
            match f.normalizer.normalize(data, &settings, origin.clone()) {
                Ok(out) => {
                    assert!(
                        data.len() <= settings.max_message_bytes,
                        "a message over max_message_bytes was accepted"
                    );
                    assert!(
                        !out.events.is_empty() || !out.rejected.is_empty(),
                        "a message vanished: no event and no rejection"
                    );
                    for (env, raw) in &out.events {
                        envelope(f, env, raw);
                    }
                    for r in &out.rejected {
                        rejection(&r.error);
                    }
                }
                Err(e) => {
                    if data.len() > settings.max_message_bytes {
                        assert!(
                            matches!(e, NormalizeError::TooLarge { .. }),
                            "oversized message rejected as {e:?}"
                        );
                    }
                    rejection(&e);
                }
            }
        }
    }
}

fn rejection(e: &NormalizeError) {
    assert!(!e.reason().is_empty());
    let _ = e.to_string();
    serde_json::to_string(&e.problems()).expect("problems serialize");
}

fn envelope(f: &Fixture, env: &Envelope, raw: &[u8]) {
    assert!(!env.id.is_empty(), "envelope without id");
    assert!(!env.event.trim().is_empty(), "envelope without event");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&env.timestamp).is_ok(),
        "envelope timestamp {:?} is not RFC 3339",
        env.timestamp
    );
    let body = serde_json::to_vec(env).expect("envelopes serialize");
    serde_json::from_slice::<serde_json::Value>(&body).expect("the envelope body parses back");
    // `body = "original"` sends these bytes: never empty for an accepted event.
    assert!(!raw.is_empty(), "an envelope without original bytes");

    let _ = f.router.route(env);

    let url = f.url.render(env, true);
    let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("templated URL {url:?}: {e}"));
    assert_eq!(
        parsed.host_str(),
        Some(TEMPLATE_HOST),
        "an event field redirected the delivery: {url}"
    );
    let header = f.header.render(env, false);
    assert!(
        header.bytes().all(|b| (b >= 32 && b != 127) || b == b'\t'),
        "templated header value {header:?} is not a valid HTTP header value"
    );

    for names in [EventNames::Original, EventNames::SnakeCase] {
        serde_json::to_vec(&posthog::event_json(env, names)).expect("PostHog events serialize");
    }
    let target = TargetRef {
        name: "crm".into(),
        guid: uuid::Uuid::nil(),
    };
    let duration = Duration::from_millis(1);
    let failure = Failure::Status {
        status: 500,
        hint: String::new(),
    };
    for outcome in [
        Outcome::Delivered {
            status: 200,
            attempts: 1,
            duration,
        },
        Outcome::Failed {
            error: failure,
            attempts: 1,
            duration,
        },
    ] {
        let (kind, v) = result_event(env, &target, &outcome, &Default::default());
        assert_eq!(v["event"], kind.as_str(), "a user trait overrode `event`");
        assert_eq!(
            v["source_event_id"],
            env.id.as_str(),
            "a user trait overrode `source_event_id`"
        );
        serde_json::to_vec(&v).expect("result events serialize");
    }
}

/// Environment for the second `load_str` pass: references resolve, overrides apply.
fn fuzz_env() -> Vec<(String, String)> {
    [
        ("A", "a"),
        ("EMPTY", ""),
        ("NESTED", "${A}"),
        ("KAFKA_BROKERS", "localhost:9092"),
        ("URL", "https://h.example"),
        ("EVENT_RELAY__PIPELINE__MAX_IN_FLIGHT_EVENTS", "5"),
        ("EVENT_RELAY__LOG__INCLUDE_PAYLOADS", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// TOML text through the config loader with an empty environment and with [`fuzz_env`]; then
/// the raw input as a string value inside a minimal valid config, so `${VAR}` expansion sees
/// arbitrary text, not only text that happens to be valid TOML.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // `config::load` reads the file as UTF-8 and reports anything else as unreadable.
        return;
    };
    check_config(config::load_str(text, std::iter::empty()));
    check_config(config::load_str(text, fuzz_env()));

    let value = toml_string(text);
    let embedded = format!(
        "[kafka]\nbrokers = {value}\n[results]\ntopic = \"r\"\n[dead_letter]\ntopic = \"d\"\n\
         [[sources]]\ntopic = \"s\"\nformat = \"komo\"\n[log]\nlevel = {value}\n"
    );
    let loaded = config::load_str(&embedded, fuzz_env());
    if !text.contains("${") {
        // Nothing to expand: the value arrives verbatim (or the config is invalid for another
        // reason, e.g. an empty broker list).
        if let Ok(c) = &loaded {
            assert_eq!(c.kafka.brokers, text, "a value without ${{ changed");
        }
    }
    check_config(loaded);
}

fn check_config(r: Result<Config, config::ConfigError>) {
    match r {
        Ok(c) => {
            if let Err(e) = c.validate() {
                panic!("a loaded config fails validation on a second look: {e}");
            }
            let _ = Router::new(&c);
            serde_json::to_string(&c).expect("configs serialize");
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without problems");
            let _ = e.to_string();
        }
    }
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Catalog file text (`[[catalogs]]`, `event-relay catalog check`) → a checked file or its
/// problems, each at a JSON path under `$`; a file the check accepts must compile over the
/// built-in catalogs (the check and the compiler agree).
pub fn catalog(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // `check_file` reports a file that is not UTF-8 as a problem before this point.
        return;
    };
    match event_relay::catalog::check_text(text) {
        Ok(file) => {
            if let Err(e) = event_relay::catalog::Catalogs::with_files([file]) {
                panic!("a checked catalog file does not compile: {e}");
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "an error without problems");
            for p in &problems {
                assert!(
                    p.path.starts_with('$'),
                    "a problem without a JSON path: {p}"
                );
            }
        }
    }
}

/// The config fuzz target's entry: JSON (first non-blank byte `{`) is a catalog file, anything
/// else config TOML, so one corpus covers both formats the operator writes.
pub fn config_or_catalog(data: &[u8]) {
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => catalog(data),
        _ => config(data),
    }
}

/// Where a transform input's program ends and its message begins: the first line that is
/// exactly `---`. Without one the whole input is the program, run on [`SAMPLE_MESSAGE`].
pub const TRANSFORM_SEPARATOR: &[u8] = b"\n---\n";

/// The message a program without one runs on (a Komo sign-up, with an email and traits).
pub const SAMPLE_MESSAGE: &[u8] = br#"{"email": "joe@bloggs.com", "event": "SignUpSuccess", "favourite_team": "Lions", "first_name": "Joe", "id": "6657fdf0-4303-511d-a94b-8586edb43ba1", "last_name": "Bloggs", "optin": "true", "postcode": "2000", "site_id": "6e7a3b14-d40a-53df-8e33-7ebcee5c2373", "site_name": "My site", "timestamp": "2024-05-01T12:06:00.000Z", "user_profile_id": "001d66b4-f30f-5f15-a81f-1be3ad2848cf", "user_session_id": "becf7691-16e6-5ab3-8122-d4f21719fc67"}"#;

/// Events of one message a program runs on (a batch may hold many; two show the runtime is
/// reused between events).
const TRANSFORM_EVENTS: usize = 2;

/// `batch_max_bytes` of the small-limit specs.
pub const TRANSFORM_SMALL_LIMIT: usize = 4096;

/// The URL a transform's `%path` is appended to; its host, query and base path must stay.
const TRANSFORM_URL: &str = "https://hooks.example/base/?k=1";

/// The sample envelope (from [`SAMPLE_MESSAGE`]) and `transform_vars`.
struct TransformFixture {
    sample: Envelope,
    vars: BTreeMap<String, String>,
}

fn transform_fixture() -> &'static TransformFixture {
    static F: OnceLock<TransformFixture> = OnceLock::new();
    F.get_or_init(|| {
        let out = fixture()
            .normalizer
            .normalize(
                SAMPLE_MESSAGE,
                &SourceSettings::standalone(SourceFormat::Auto),
                origin(),
            )
            .expect("the sample message normalizes");
        TransformFixture {
            sample: out.events.into_iter().next().expect("one event").0,
            vars: BTreeMap::from([
                ("api_key".to_string(), "k-1".to_string()),
                ("region".to_string(), "eu".to_string()),
            ]),
        }
    })
}

fn origin() -> Origin {
    Origin {
        topic: "fuzz".into(),
        partition: 3,
        offset: 7,
        key: Some("k".into()),
    }
}

/// `EVENT_RELAY_FUZZ_DEBUG=1`: the transform harness prints each compile error and outcome to
/// stderr, to see what a seed exercises (the fuzz binary runs each file argument once:
/// `EVENT_RELAY_FUZZ_DEBUG=1 fuzz/target/*/release/transform fuzz/seeds/transform/*`).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("EVENT_RELAY_FUZZ_DEBUG").is_some())
}

/// A target's program text and a message, split at [`TRANSFORM_SEPARATOR`].
pub fn split_transform_input(data: &[u8]) -> (&[u8], &[u8]) {
    match data
        .windows(TRANSFORM_SEPARATOR.len())
        .position(|w| w == TRANSFORM_SEPARATOR)
    {
        Some(at) => (&data[..at], &data[at + TRANSFORM_SEPARATOR.len()..]),
        None => (data, SAMPLE_MESSAGE),
    }
}

/// Which body a compiled program is run on, as the target kind would send it.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    /// A webhook target: the envelope JSON (`body = "envelope"`) and the original message
    /// (`body = "original"`).
    Webhook,
    /// A PostHog target: the PostHog event object.
    Posthog,
}

impl Body {
    fn name(self) -> &'static str {
        match self {
            Body::Webhook => "webhook",
            Body::Posthog => "posthog",
        }
    }
}

/// An event, the bodies a webhook target's program gets for it (envelope, original bytes) and
/// those a PostHog target's program gets.
type EventInputs = (Envelope, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// A program (the text before [`TRANSFORM_SEPARATOR`]) compiled as a webhook target's (a large
/// and a small `batch_max_bytes`) and as a PostHog target's, each compiled program run on the
/// message's events (normalized with the built-in catalogs) exactly as the target would send
/// them, or on the raw message with a sample envelope when it does not normalize. Every
/// outcome is checked: a body is JSON within the limit (and a PostHog event for PostHog
/// targets), headers and `%path` keep to their rules, a failure names its reason.
///
/// A panic inside VRL that `Transform::run` caught (`TransformFailure::Panicked`) is a finding
/// too: under libFuzzer the panic hook aborts before the catch; in the replay the harness
/// panics on it.
pub fn transform(data: &[u8]) {
    let tf = transform_fixture();
    let (program, message) = split_transform_input(data);
    let Ok(program) = std::str::from_utf8(program) else {
        // Programs are read from TOML or a file as UTF-8.
        return;
    };
    let specs = [
        (Body::Webhook, "crm", DEFAULT_LIMIT, None),
        (
            Body::Webhook,
            "crm",
            TRANSFORM_SMALL_LIMIT,
            Some(Path::new("transforms/crm.vrl")),
        ),
        (Body::Posthog, "posthog", TRANSFORM_SMALL_LIMIT, None),
    ];
    let mut compiled = Vec::new();
    let mut webhook_ok = false;
    for (body, target, max_bytes, file) in specs {
        let spec = Spec {
            target,
            posthog: body == Body::Posthog,
            vars: &tf.vars,
            max_bytes,
        };
        match transform::compile(program, file, &spec) {
            Ok(t) => {
                webhook_ok |= body == Body::Webhook;
                compiled.push((t, body, max_bytes));
            }
            Err(e) => {
                if debug() {
                    eprintln!("compile ({target}, {max_bytes} bytes): {e}");
                }
                assert!(
                    !e.diagnostics.is_empty(),
                    "a compile error without diagnostics"
                );
                for d in &e.diagnostics {
                    assert!(!d.trim().is_empty(), "an empty diagnostic");
                }
                let _ = e.to_string();
                // PostHog targets differ from webhook targets only in refusing `%path`.
                assert!(
                    body != Body::Posthog
                        || !webhook_ok
                        || e.diagnostics.iter().all(|d| d.starts_with("assigns %path")),
                    "a program compiles for a webhook target but not for a PostHog target: {e}"
                );
            }
        }
    }
    if compiled.is_empty() {
        return;
    }

    // The events the programs run on, with the bytes each target kind would send.
    let mut events: Vec<EventInputs> = Vec::new();
    let settings = SourceSettings {
        validation: ValidationMode::Lenient,
        ..SourceSettings::standalone(SourceFormat::Auto)
    };
    if let Ok(out) = fixture().normalizer.normalize(message, &settings, origin()) {
        for (env, raw) in out.events.into_iter().take(TRANSFORM_EVENTS) {
            let mut envelope = Vec::new();
            env.write_json(&mut envelope);
            let mut event = Vec::new();
            posthog::write_event(&mut event, &env, EventNames::Original);
            events.push((env, vec![envelope, raw.to_vec()], vec![event]));
        }
    }
    if events.is_empty() {
        events.push((
            tf.sample.clone(),
            vec![message.to_vec()],
            vec![message.to_vec()],
        ));
    }

    for (t, body, max_bytes) in &compiled {
        for (env, webhook, posthog) in &events {
            let inputs = match body {
                Body::Webhook => webhook,
                Body::Posthog => posthog,
            };
            for input in inputs {
                let outcome = t.run(input, env);
                if debug() {
                    let shown = match &outcome {
                        Shaped::Send { body, request } => format!(
                            "send {request:?} {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ),
                        other => format!("{other:?}"),
                    };
                    eprintln!("run ({}, {max_bytes} bytes): {shown}", body.name());
                }
                check_transform_outcome(&outcome, program, *body, *max_bytes);
            }
        }
    }
}

/// What a run may return, for a program `program` compiled for `body`'s target kind.
fn check_transform_outcome(outcome: &Shaped, program: &str, body: Body, max_bytes: usize) {
    match outcome {
        Shaped::Send { body: out, request } => {
            assert!(
                out.len() <= max_bytes,
                "a body of {} bytes over batch_max_bytes {max_bytes}",
                out.len()
            );
            let value: serde_json::Value = match serde_json::from_slice(out) {
                Ok(v) => v,
                // Nested deeper than serde_json reads by default (128): JSON all the same.
                Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
                    serde_json::Value::Null
                }
                Err(e) => panic!("a transformed body is not JSON: {e}"),
            };
            if body == Body::Posthog && !value.is_null() {
                for key in ["event", "distinct_id"] {
                    assert!(
                        value[key].as_str().is_some_and(|s| !s.is_empty()),
                        "a PostHog body without {key}: {value}"
                    );
                }
                assert!(
                    value.get("properties").is_none_or(|p| p.is_object()),
                    "a PostHog body whose properties are not an object"
                );
                if let Some(u) = value.get("uuid").filter(|u| !u.is_null()) {
                    assert!(
                        u.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
                        "a PostHog body with uuid {u}"
                    );
                }
                assert!(request.path.is_none(), "a PostHog target got a %path");
            }
            for (name, text) in &request.headers {
                assert!(
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
                    "header name {name:?}"
                );
                assert!(
                    !transform::RESERVED_HEADERS.contains(&name.as_str()),
                    "a transform set the reserved header {name}"
                );
                assert!(
                    text.bytes().all(|b| (b >= 32 && b != 127) || b == b'\t'),
                    "header value {text:?} is not a valid HTTP header value"
                );
            }
            let mut url = url::Url::parse(TRANSFORM_URL).unwrap();
            request.apply_path(&mut url);
            let again = url::Url::parse(url.as_str()).expect("the URL with %path parses back");
            for u in [&url, &again] {
                assert_eq!(
                    u.host_str(),
                    Some("hooks.example"),
                    "%path changed the host: {u}"
                );
                assert_eq!(u.query(), Some("k=1"), "%path changed the query: {u}");
                assert_eq!(u.fragment(), None, "%path added a fragment: {u}");
                assert!(
                    u.path().starts_with("/base/"),
                    "%path left the base path: {u}"
                );
            }
            assert_eq!(
                url.path(),
                again.path(),
                "%path is read differently after a round trip"
            );
        }
        Shaped::Skip => {}
        Shaped::Fail(TransformFailure::Panicked(msg)) => {
            panic!("VRL panicked (caught by Transform::run): {msg}")
        }
        Shaped::Fail(failure) => {
            assert!(!failure.to_string().is_empty());
            if let TransformFailure::Runtime {
                at: Some((line, col)),
                ..
            } = failure
            {
                let lines = program.split('\n').count();
                assert!(
                    (1..=lines).contains(line) && *col >= 1,
                    "a runtime error at {line}:{col} of a {lines}-line program"
                );
            }
        }
    }
}
