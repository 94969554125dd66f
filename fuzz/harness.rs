//! The fuzz harnesses, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and the replay of
//! saved crashers in `tests/fuzz_regressions.rs`, so a regression file runs through exactly the
//! code path that found it. Only `event_relay` and crates the main package depends on too
//! (`serde_json`, `url`, `uuid`, `chrono`) are used.
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
