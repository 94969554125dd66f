//! Poison messages (issue 7, fault test 8) against the real broker and the real relay: a corpus
//! of hostile inputs interleaved with good Komo and acemate events on two strict sources. Each
//! hostile message must end on the dead-letter topic with the expected `reason` header, or be
//! forwarded where the validation policy says so (duplicate keys, unknown events, odd but valid
//! values); every good event must be delivered; the relay must keep running (`/healthz` 200, a
//! later good event still flows) and commit everything it consumed.

use crate::fixtures::receiver::Receiver;
use crate::fixtures::*;
use event_relay::config::{RetryConfig, SourceFormat};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What must become of one hostile message.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// On the dead-letter topic with this `reason` header.
    Dead(&'static str),
    /// Delivered with this `validation.status`.
    Forwarded(&'static str),
}
use Expect::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    Komo,
    Acemate,
}

struct Case {
    name: &'static str,
    src: Src,
    payload: Vec<u8>,
    expect: Expect,
}

const MIB: usize = 1024 * 1024;

/// A valid event of the catalog from the generated fixtures, with a fresh id.
fn fixture(event: &str, id_key: &str) -> Value {
    let fixtures = include_str!("../fixtures/valid_events.jsonl");
    let mut v: Value = fixtures
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event"] == event && v.get(id_key).is_some())
        .unwrap_or_else(|| panic!("no fixture for {event}"));
    v[id_key] = json!(uuid::Uuid::new_v4().to_string());
    v
}

fn komo(event: &str) -> Value {
    fixture(event, "id")
}

fn acemate(event: &str) -> Value {
    fixture(event, "uuid")
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// `v` with `path` (`a.b`) set to `value`.
fn with(mut v: Value, path: &str, value: Value) -> Value {
    let mut cur = &mut v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[parts[parts.len() - 1]] = value;
    v
}

/// `v` without the top-level key `key`.
fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// A JSON object text with `key` written twice: first `first`, then `second` (last one wins).
fn duplicated(v: &Value, key: &str, first: &str, second: &str) -> Vec<u8> {
    let mut m = v.as_object().unwrap().clone();
    m.remove(key);
    let rest = serde_json::to_string(&Value::Object(m)).unwrap();
    format!(
        "{{\"{key}\":{first},{},\"{key}\":{second}}}",
        &rest[1..rest.len() - 1]
    )
    .into_bytes()
}

/// Replaces the first occurrence of `from` in the serialized event with raw bytes `to`.
fn splice(v: &Value, from: &str, to: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(v).unwrap();
    let at = text
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from:?} not in the event"));
    let mut out = text[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&text[at + from.len()..]);
    out
}

fn hostile_corpus(big: usize) -> Vec<Case> {
    let k = |name, payload, expect| Case {
        name,
        src: Src::Komo,
        payload,
        expect,
    };
    let a = |name, payload, expect| Case {
        name,
        src: Src::Acemate,
        payload,
        expect,
    };
    // Each case gets its own event id (a fresh fixture), so results can be told apart.
    let card = || {
        with(
            with(komo("CardViewed"), "card_name", json!("card name")),
            "score",
            json!("1"),
        )
    };
    let action = || komo("CardAction");
    let flash = || acemate("ai_flashcard_created");
    let chapter = || acemate("chapter_created");
    let onboarding = || acemate("educator_onboarding_completed");
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes();
    let deep_in_data = bytes(&json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "distinct_id": "u1",
        "data": format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    }));
    let huge = bytes(&with(card(), "card_name", json!("x".repeat(big))));
    let komo_text = serde_json::to_string(&card()).unwrap();
    vec![
        // Not JSON at all, or not an object.
        k("not-json", b"hello, world".to_vec(), Dead("not_json")),
        k("empty", Vec::new(), Dead("not_json")),
        k("whitespace", b" \n\t ".to_vec(), Dead("not_json")),
        k(
            "truncated",
            komo_text.as_bytes()[..komo_text.len() / 2].to_vec(),
            Dead("not_json"),
        ),
        k(
            "trailing-garbage",
            [komo_text.as_bytes(), b"}"].concat(),
            Dead("not_json"),
        ),
        k(
            "array",
            b"[{\"event\":\"CardViewed\"}]".to_vec(),
            Dead("not_object"),
        ),
        k("number", b"42".to_vec(), Dead("not_object")),
        k("string", b"\"CardViewed\"".to_vec(), Dead("not_object")),
        k("null", b"null".to_vec(), Dead("not_object")),
        a("boolean", b"true".to_vec(), Dead("not_object")),
        // Size and depth.
        k("huge", huge, Dead("too_large")),
        // Within max_message_bytes but, with its error headers, over Kafka's 1 MB default.
        k(
            "huge-enum-value",
            bytes(&with(action(), "action", json!("x".repeat(600_000)))),
            Dead("invalid"),
        ),
        // Valid, just under max_message_bytes: its result event (user attributes ride along)
        // is over Kafka's 1 MB default.
        k(
            "huge-user-attribute",
            bytes(&with(
                card(),
                "favourite_team",
                json!("x".repeat(1_040_000)),
            )),
            Forwarded("valid"),
        ),
        k("deep-arrays", deep_arrays, Dead("too_deep")),
        a("deep-objects", deep_objects, Dead("too_deep")),
        a("deep-inside-posthog-data", deep_in_data, Dead("too_deep")),
        // Encoding.
        k(
            "invalid-utf8",
            splice(&card(), "card name", b"card \xff\xfe name"),
            Dead("invalid_utf8"),
        ),
        k(
            "overlong-utf8",
            splice(&card(), "card name", b"card \xc0\xaf name"),
            Dead("invalid_utf8"),
        ),
        k(
            "raw-nul-in-string",
            splice(&card(), "card name", b"card \0 name"),
            Dead("not_json"),
        ),
        k(
            "raw-nul-between-tokens",
            splice(&card(), "\"event\":", b"\"event\":\0"),
            Dead("not_json"),
        ),
        k(
            "escaped-nul-in-value",
            bytes(&with(card(), "card_name", json!("card \u{0} name"))),
            Forwarded("valid"),
        ),
        k(
            "escaped-nul-in-event",
            bytes(&with(card(), "event", json!("CardViewed\u{0}"))),
            Forwarded("unknown_event"),
        ),
        // Numbers.
        k("bare-1e400", b"1e400".to_vec(), Dead("not_json")),
        k(
            "bare-bignum",
            b"123456789012345678901234567890".to_vec(),
            Dead("not_object"),
        ),
        k(
            "score-1e400",
            splice(&card(), "\"score\":\"1\"", b"\"score\":1e400"),
            Dead("not_json"),
        ),
        k(
            "score-string-1e400",
            bytes(&with(card(), "score", json!("1e400"))),
            Dead("invalid"),
        ),
        k(
            "score-bignum",
            splice(
                &card(),
                "\"score\":\"1\"",
                b"\"score\":123456789012345678901234567890",
            ),
            Forwarded("valid"),
        ),
        a(
            "acemate-number-1e400",
            splice(&flash(), "\"numberTopics\":3", b"\"numberTopics\":-1e400"),
            Dead("not_json"),
        ),
        a(
            "acemate-number-bignum",
            splice(
                &flash(),
                "\"numberTopics\":3",
                b"\"numberTopics\":123456789012345678901234567890",
            ),
            Forwarded("valid"),
        ),
        // Duplicate keys: the last one wins, as in every JSON parser that keeps one.
        k(
            "duplicate-event",
            duplicated(&card(), "event", "5", "\"CardViewed\""),
            Forwarded("valid"),
        ),
        k(
            "duplicate-score",
            duplicated(&card(), "score", "\"not a number\"", "\"3\""),
            Forwarded("valid"),
        ),
        a(
            "duplicate-event-unknown-wins",
            duplicated(
                &chapter(),
                "event",
                "\"chapter_created\"",
                "\"zz_new_event\"",
            ),
            Forwarded("unknown_event"),
        ),
        // `event` missing, empty, not a string.
        k(
            "event-missing",
            bytes(&without(card(), "event")),
            Dead("missing_event"),
        ),
        k(
            "event-empty",
            bytes(&with(card(), "event", json!(""))),
            Dead("missing_event"),
        ),
        k(
            "event-blank",
            bytes(&with(card(), "event", json!("  \t"))),
            Dead("missing_event"),
        ),
        k(
            "event-number",
            bytes(&with(card(), "event", json!(42))),
            Dead("missing_event"),
        ),
        k(
            "event-null",
            bytes(&with(card(), "event", Value::Null)),
            Dead("missing_event"),
        ),
        a(
            "event-array",
            bytes(&with(flash(), "event", json!(["ai_flashcard_created"]))),
            Dead("missing_event"),
        ),
        a(
            "event-object",
            bytes(&with(flash(), "event", json!({}))),
            Dead("missing_event"),
        ),
        // Unknown events: forwarded (unknown_events = "forward", the default).
        k(
            "unknown-komo",
            bytes(&with(card(), "event", json!("TotallyNewEvent"))),
            Forwarded("unknown_event"),
        ),
        k(
            "unknown-komo-unicode",
            bytes(&with(card(), "event", json!("Card\u{202e}Viewed 💥"))),
            Forwarded("unknown_event"),
        ),
        a(
            "unknown-acemate",
            bytes(&with(flash(), "event", json!("brand_new_thing"))),
            Forwarded("unknown_event"),
        ),
        // Wrong types for every catalog type, strict sources: dead-lettered as invalid.
        k(
            "komo-string-as-number",
            bytes(&with(card(), "card_name", json!(5))),
            Dead("invalid"),
        ),
        k(
            "komo-number-as-text",
            bytes(&with(card(), "score", json!("abc"))),
            Dead("invalid"),
        ),
        k(
            "komo-number-as-bool",
            bytes(&with(card(), "correct", json!(true))),
            Dead("invalid"),
        ),
        k(
            "komo-uuid",
            bytes(&with(card(), "card_id", json!("not-a-uuid"))),
            Dead("invalid"),
        ),
        k(
            "komo-common-uuid",
            bytes(&with(card(), "site_id", json!(17))),
            Dead("invalid"),
        ),
        k(
            "komo-enum",
            bytes(&with(action(), "action", json!("NotAnAction"))),
            Dead("invalid"),
        ),
        k(
            "komo-required-missing",
            bytes(&without(card(), "card_id")),
            Dead("invalid"),
        ),
        a(
            "acemate-string-as-number",
            bytes(&with(flash(), "properties.userPrompt", json!(5))),
            Dead("invalid"),
        ),
        a(
            "acemate-number-as-text",
            bytes(&with(flash(), "properties.numberTopics", json!("three"))),
            Dead("invalid"),
        ),
        a(
            "acemate-boolean",
            bytes(&with(flash(), "properties.hasUserPrompt", json!("yes"))),
            Dead("invalid"),
        ),
        a(
            "acemate-array",
            bytes(&with(
                onboarding(),
                "properties.usageReasons",
                json!("chat_documents"),
            )),
            Dead("invalid"),
        ),
        a(
            "acemate-uuid",
            bytes(&with(flash(), "properties.courseId", json!("course-1"))),
            Dead("invalid"),
        ),
        a(
            "acemate-email",
            bytes(&with(flash(), "properties.email", json!("not an email"))),
            Dead("invalid"),
        ),
        a(
            "acemate-date-time",
            bytes(&with(
                chapter(),
                "properties.publishedAt",
                json!("last tuesday"),
            )),
            Dead("invalid"),
        ),
        a(
            "acemate-enum",
            bytes(&with(flash(), "properties.courseType", json!("galaxy"))),
            Dead("invalid"),
        ),
        a(
            "acemate-null-not-nullable",
            bytes(&with(flash(), "properties.courseType", Value::Null)),
            Dead("invalid"),
        ),
        a(
            "acemate-properties-array",
            bytes(&with(flash(), "properties", json!([1, 2]))),
            Dead("invalid"),
        ),
        // Timestamps.
        k(
            "komo-year-9999",
            bytes(&with(
                card(),
                "timestamp",
                json!("9999-12-31T23:59:59.999Z"),
            )),
            Dead("invalid_timestamp"),
        ),
        k(
            "komo-timestamp-number",
            bytes(&with(card(), "timestamp", json!(1714564800))),
            Dead("invalid_timestamp"),
        ),
        k(
            "komo-timestamp-garbage",
            bytes(&with(card(), "timestamp", json!("yesterday"))),
            Dead("invalid_timestamp"),
        ),
        a(
            "acemate-year-9999",
            bytes(&with(flash(), "timestamp", json!("9999-01-01T00:00:00Z"))),
            Dead("invalid_timestamp"),
        ),
        a(
            "acemate-timestamp-number",
            bytes(&with(flash(), "timestamp", json!(1714564800000u64))),
            Dead("invalid_timestamp"),
        ),
        // acemate shapes.
        a(
            "batch-not-array",
            bytes(&json!({"api_key": "phc", "batch": "nope"})),
            Dead("bad_shape"),
        ),
        a(
            "batch-empty",
            bytes(&json!({"api_key": "phc", "batch": []})),
            Dead("bad_shape"),
        ),
        a(
            "posthog-data-not-json",
            bytes(
                &json!({"uuid": uuid::Uuid::new_v4().to_string(), "distinct_id": "u1", "data": "{not json"}),
            ),
            Dead("not_json"),
        ),
    ]
}

/// A producer that may send messages far above librdkafka's 1 MB default.
fn big_producer(broker: &Broker) -> FutureProducer {
    broker
        .client_config()
        .set("linger.ms", "1")
        .set("message.max.bytes", (64 * MIB).to_string())
        .create()
        .unwrap()
}

async fn send(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Result<(), String> {
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(30),
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| e.to_string())
}

/// The largest oversized message the broker takes: 10 MiB if it can, else the largest of a few
/// smaller sizes above the relay's 1 MiB limit. Probed on a scratch topic.
async fn largest_accepted(broker: &Broker, p: &FutureProducer) -> usize {
    let scratch = broker.topic("probe", 1).await;
    for size in [10 * MIB, 8 * MIB, 4 * MIB, 2 * MIB, MIB + 64 * 1024] {
        match send(p, &scratch, "probe", &vec![b'x'; size]).await {
            Ok(()) => return size,
            Err(e) => eprintln!("poison: the broker refused a {size}-byte message: {e}"),
        }
    }
    panic!("the broker accepts no message above the relay's 1 MiB limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_dead_lettered_or_forwarded_and_good_ones_flow() {
    let rx = Receiver::start(vec![]).await;
    let mut env = TestEnv::komo("g-poison", 1).await;
    let acemate_topic = env.broker.topic("src-acemate", 1).await;
    env.config
        .sources
        .push(source(&acemate_topic, SourceFormat::Acemate));
    let mut hook = webhook("hook", &format!("{}/hook", rx.url));
    hook.max_in_flight = 8;
    hook.retry.max_elapsed = RetryConfig::default().max_elapsed;
    env.config.targets.push(hook);
    env.config.routes.push(route_all(&["hook"]));
    let relay = env.relay();
    let (broker, topics) = (&env.broker, &env.topics);
    let group = env.config.kafka.group_id.as_str();
    let producer = big_producer(broker);
    let big = largest_accepted(broker, &producer).await;
    if big < 10 * MIB {
        eprintln!(
            "poison: the broker's limit is below 10 MiB; the oversized case uses {big} bytes"
        );
    }

    let corpus = hostile_corpus(big);
    let topic_of = |s: Src| match s {
        Src::Komo => topics.source.clone(),
        Src::Acemate => acemate_topic.clone(),
    };
    // Interleave: good komo, hostile, good acemate, hostile, ...
    let mut good: BTreeSet<String> = BTreeSet::new();
    let mut hostile: BTreeMap<String, &Case> = BTreeMap::new();
    let mut produced = BTreeMap::<String, i64>::new();
    for (i, case) in corpus.iter().enumerate() {
        let (src, payload) = if i % 2 == 0 {
            (
                Src::Komo,
                bytes(&komo(["CardViewed", "CardAction"][i % 4 / 2])),
            )
        } else {
            (
                Src::Acemate,
                bytes(&acemate(
                    ["ai_flashcard_created", "chapter_created"][i % 4 / 2],
                )),
            )
        };
        let key = format!("good-{i}");
        send(&producer, &topic_of(src), &key, &payload)
            .await
            .unwrap();
        *produced.entry(topic_of(src)).or_default() += 1;
        good.insert(key);

        let key = format!("hostile-{i}-{}", case.name);
        send(&producer, &topic_of(case.src), &key, &case.payload)
            .await
            .unwrap_or_else(|e| panic!("producing {}: {e}", case.name));
        *produced.entry(topic_of(case.src)).or_default() += 1;
        hostile.insert(key, case);
    }
    let expected_dead = hostile
        .values()
        .filter(|c| matches!(c.expect, Dead(_)))
        .count();
    let expected_forwarded = hostile.len() - expected_dead;

    // Everything reaches its end: the receiver has every good event and every forwarded one,
    // the dead-letter topic has the rest.
    let delivered_keys = || -> BTreeMap<String, Value> {
        rx.requests()
            .iter()
            .map(|r| r.json())
            .filter_map(|env| Some((env["origin"]["key"].as_str()?.to_string(), env)))
            .collect()
    };
    let settled = eventually(Duration::from_secs(120), || async {
        let d = delivered_keys();
        good.iter().all(|k| d.contains_key(k))
            && d.keys().filter(|k| k.starts_with("hostile-")).count() >= expected_forwarded
    })
    .await;
    let dead = broker
        .read(&topics.dlq, expected_dead, Duration::from_secs(120))
        .await;
    let delivered = delivered_keys();
    assert!(
        settled,
        "missing deliveries: good {:?}, forwarded {} of {expected_forwarded}",
        good.iter()
            .filter(|k| !delivered.contains_key(*k))
            .collect::<Vec<_>>(),
        delivered
            .keys()
            .filter(|k| k.starts_with("hostile-"))
            .count()
    );

    // Dead letters: one per expected one, original bytes, reason and origin headers.
    let mut dead_keys = BTreeSet::new();
    let mut truncated = 0;
    for d in &dead {
        let key = d.key.clone().expect("dead letters keep the message key");
        let case = hostile
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected dead letter {key} ({:?})", d.header("reason")));
        assert!(
            matches!(case.expect, Dead(r) if d.header("reason") == Some(r)),
            "{key}: expected {:?}, dead-lettered with reason {:?}: {:?}",
            case.expect,
            d.header("reason"),
            d.header("error")
        );
        assert!(
            d.header("error").is_some_and(|e| !e.is_empty()),
            "{key}: error header"
        );
        assert!(d.header("problems").is_some(), "{key}: problems header");
        assert_eq!(
            d.header("source_topic"),
            Some(topic_of(case.src).as_str()),
            "{key}"
        );
        assert!(
            d.header("source_offset")
                .is_some_and(|o| o.parse::<i64>().is_ok()),
            "{key}"
        );
        if d.header("truncated") == Some("true") {
            // Too large for Kafka even as a dead letter: a prefix, and the original's size.
            assert!(
                case.payload.starts_with(&d.value),
                "{key}: a prefix of the original"
            );
            assert!(d.value.len() < case.payload.len(), "{key}: cut down");
            assert_eq!(
                d.header("original_size"),
                Some(case.payload.len().to_string().as_str()),
                "{key}"
            );
            truncated += 1;
        } else {
            assert_eq!(
                d.value, case.payload,
                "{key}: the dead letter keeps the original bytes"
            );
        }
        assert!(dead_keys.insert(key.clone()), "{key} dead-lettered twice");
    }

    // The two whose dead letter exceeds Kafka's 1 MB default (the relay's producer) are cut
    // down instead of being retried forever.
    assert_eq!(
        truncated, 2,
        "dead letters cut down: the oversized one and huge-enum-value"
    );

    // Forwarded hostile ones carry the status the policy gives them.
    let mut forwarded_keys = BTreeSet::new();
    for (key, env) in delivered.iter().filter(|(k, _)| k.starts_with("hostile-")) {
        let case = hostile[key];
        assert!(
            matches!(case.expect, Forwarded(s) if env["validation"]["status"] == s),
            "{key}: expected {:?}, forwarded as {}: {}",
            case.expect,
            env["validation"]["status"],
            env["validation"]["problems"]
        );
        forwarded_keys.insert(key.clone());
    }
    for (key, case) in &hostile {
        assert!(
            dead_keys.contains(key) || forwarded_keys.contains(key),
            "{key} ({:?}) neither dead-lettered nor forwarded",
            case.expect
        );
        assert!(
            !(dead_keys.contains(key) && forwarded_keys.contains(key)),
            "{key} both dead-lettered and forwarded"
        );
    }
    // Good events: every one delivered, valid, none dead-lettered.
    for key in &good {
        assert_eq!(delivered[key]["validation"]["status"], "valid", "{key}");
    }

    // The accounting.
    let good_delivered = good.iter().filter(|k| delivered.contains_key(*k)).count();
    assert_eq!(good_delivered, good.len(), "good delivered = good produced");
    assert_eq!(
        dead_keys.len() + forwarded_keys.len(),
        hostile.len(),
        "dead letters + forwarded = hostile produced"
    );
    assert_eq!(dead_keys.len(), expected_dead);
    assert_eq!(forwarded_keys.len(), expected_forwarded);
    eprintln!(
        "poison: {} good delivered, {} hostile: {} dead-lettered, {} forwarded; oversized case {big} bytes",
        good_delivered,
        hostile.len(),
        dead_keys.len(),
        forwarded_keys.len()
    );

    // The relay never restarted and still works.
    assert!(
        !relay.handle.as_ref().unwrap().is_finished(),
        "the relay task ended"
    );
    assert_eq!(relay.get("/healthz").await.0, 200);
    let after = uuid::Uuid::new_v4().to_string();
    send(
        &producer,
        &topics.source,
        "good-after",
        &komo_event(&after, "CardViewed"),
    )
    .await
    .unwrap();
    *produced.entry(topics.source.clone()).or_default() += 1;
    assert!(
        eventually(Duration::from_secs(60), || async {
            rx.requests()
                .iter()
                .any(|r| r.json()["id"] == after.as_str())
        })
        .await,
        "a good event after the poison corpus still flows"
    );
    assert!(!relay.handle.as_ref().unwrap().is_finished());

    // One result event per delivered event, including the one whose user attributes make the
    // full result larger than Kafka takes: it is produced cut down, not retried forever.
    let expected_results = good.len() + forwarded_keys.len() + 1;
    let results = broker
        .read(
            &topics.results,
            expected_results + 1,
            Duration::from_secs(10),
        )
        .await;
    let by_source: BTreeMap<String, Value> = results
        .iter()
        .map(|r| {
            let v = r.json();
            (v["source_event_id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(results.len(), expected_results, "one result per delivery");
    assert_eq!(by_source.len(), expected_results, "no duplicate results");
    let big_key = hostile
        .keys()
        .find(|k| k.ends_with("-huge-user-attribute"))
        .unwrap();
    let big_result = &by_source[delivered[big_key]["id"].as_str().unwrap()];
    assert_eq!(big_result["event"], "WebhookSuccess");
    assert_eq!(big_result["truncated"], true, "{big_result}");
    assert!(big_result.get("favourite_team").is_none());

    // Nothing stuck: every consumed offset of both sources is committed.
    relay.stop().await.unwrap();
    for (topic, n) in &produced {
        assert_eq!(
            broker.committed(group, topic, 1),
            vec![*n],
            "all of {topic} committed"
        );
    }
}
