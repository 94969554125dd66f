use super::plan::Planner;
use super::*;
use crate::report::{Journey, ParkedRecord};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::Timestamp;
use std::time::UNIX_EPOCH;

const CONFIG: &str = r#"
    [kafka]
    brokers = "127.0.0.1:9"
    [[sources]]
    topic = "komo"
    format = "komo"
    [results]
    topic = "results"
    [dead_letter]
    topic = "dlq"
    [retry_tiers]
    topic_prefix = "retry"
    delays = ["1m", "5m"]
    failed_topic = "failed"
    [[targets]]
    name = "crm"
    kind = "webhook"
    url = "https://crm.example/"
    [[targets]]
    name = "late"
    kind = "webhook"
    url = "https://late.example/"
    retry = { tiers = ["5m"] }
"#;

fn config() -> Config {
    crate::config::load_str(CONFIG, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn request(from: FromTopic, filter: Filter) -> Request {
    Request {
        from,
        filter,
        dry_run: false,
    }
}

/// A failed delivery of event `event` to `target`, written at `ms`.
fn failed(target: &str, event: &str, ms: i64, raw: &[u8]) -> OwnedMessage {
    let mut env = crate::envelope::sample();
    env.event = event.into();
    let record = ParkedRecord {
        env,
        raw: raw.to_vec(),
        target: target.into(),
        target_id: uuid::Uuid::new_v4(),
        journey: Journey {
            attempts: 9,
            parked: 2,
            first_attempt_at: Some(at(1_000)),
            tier: Some("5m".into()),
            redrive: false,
            trace: None,
        },
        due_at: at(2_000),
        last_error: "HTTP 503: down".into(),
        reason: Some("exhausted".into()),
    };
    OwnedMessage::new(
        Some(record.payload()),
        Some(b"k".to_vec()),
        "failed".into(),
        Timestamp::CreateTime(ms),
        0,
        7,
        Some(record.headers()),
    )
}

fn dead_letter(payload: &[u8], key: &[u8], extra: &[(&str, &str)]) -> OwnedMessage {
    let mut headers = OwnedHeaders::new();
    let fixed = [
        ("reason", "invalid"),
        ("source_topic", "komo"),
        ("source_partition", "2"),
        ("source_offset", "41"),
    ];
    for (k, v) in fixed.iter().chain(extra) {
        headers = headers.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    OwnedMessage::new(
        Some(payload.to_vec()),
        Some(key.to_vec()),
        "dlq".into(),
        Timestamp::CreateTime(5_000),
        0,
        3,
        Some(headers),
    )
}

fn header(out: &Outgoing, name: &str) -> Option<String> {
    out.headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_failed_delivery_goes_to_its_targets_first_tier_with_a_fresh_budget() {
    let cfg = config();
    let req = request(FromTopic::Failed, Filter::default());
    let planner = Planner::new(&cfg, &req).unwrap();
    for (target, topic, tier) in [("crm", "retry.1m", "1m"), ("late", "retry.5m", "5m")] {
        let msg = failed(target, "CardViewed", 10_000, b"");
        let out = planner.plan(&msg, at(99_000)).unwrap();
        assert_eq!(out.topic, topic);
        assert_eq!(out.group, target);
        assert_eq!(out.payload, msg.payload().unwrap(), "payload unchanged");
        assert_eq!(
            out.key.as_deref(),
            Some(crate::envelope::sample().id.as_bytes())
        );
        let back = ParkedRecord::parse(Some(&out.headers), &out.payload).unwrap();
        let before = ParkedRecord::parse(msg.headers(), msg.payload().unwrap()).unwrap();
        assert_eq!(
            back.journey,
            Journey {
                attempts: 0,
                parked: 0,
                first_attempt_at: None,
                tier: Some(tier.into()),
                redrive: true,
                trace: None,
            }
        );
        assert_eq!(back.due_at, at(99_000));
        assert_eq!(back.reason, None);
        assert_eq!(back.last_error, before.last_error);
        assert_eq!(back.target_id, before.target_id);
        assert_eq!(back.env, before.env);
    }
}

#[test]
fn an_original_body_record_keeps_its_bytes() {
    let cfg = config();
    let req = request(FromTopic::Failed, Filter::default());
    let planner = Planner::new(&cfg, &req).unwrap();
    let msg = failed("crm", "CardViewed", 10_000, b"{\"as\":\"sent\"}");
    let out = planner.plan(&msg, at(0)).unwrap();
    assert_eq!(out.payload, b"{\"as\":\"sent\"}");
    assert_eq!(header(&out, "body").as_deref(), Some("original"));
    let back = ParkedRecord::parse(Some(&out.headers), &out.payload).unwrap();
    assert_eq!(back.raw, b"{\"as\":\"sent\"}");
}

#[test]
fn failed_filters_target_event_and_window() {
    let cfg = config();
    let filter = Filter {
        target: Some("crm".into()),
        event: Some("Card*".into()),
        since: Some(at(10_000)),
        until: Some(at(20_000)),
    };
    let req = request(FromTopic::Failed, filter);
    let planner = Planner::new(&cfg, &req).unwrap();
    let plan = |target, event, ms| planner.plan(&failed(target, event, ms, b""), at(0));
    assert!(
        plan("crm", "CardViewed", 10_000).is_ok(),
        "since is inclusive"
    );
    assert!(plan("crm", "CardAnswered", 19_999).is_ok());
    for (target, event, ms) in [
        ("late", "CardViewed", 15_000),
        ("crm", "QuizStarted", 15_000),
        ("crm", "CardViewed", 9_999),
        ("crm", "CardViewed", 20_000),
    ] {
        assert_eq!(
            plan(target, event, ms).unwrap_err(),
            Skip::NotMatching,
            "{target} {event} {ms}"
        );
    }
    let excluding = request(
        FromTopic::Failed,
        Filter {
            event: Some("!Card*".into()),
            ..Filter::default()
        },
    );
    let planner = Planner::new(&cfg, &excluding).unwrap();
    let msg = failed("crm", "CardViewed", 1, b"");
    assert_eq!(planner.plan(&msg, at(0)).unwrap_err(), Skip::NotMatching);
}

#[test]
fn failed_skips_what_it_cannot_redrive() {
    let mut cfg = config();
    cfg.targets[1].retry.tiers = Some(Vec::new());
    let req = request(FromTopic::Failed, Filter::default());
    let planner = Planner::new(&cfg, &req).unwrap();
    let plan = |msg: OwnedMessage| planner.plan(&msg, at(0)).unwrap_err();
    assert_eq!(
        plan(failed("gone", "CardViewed", 1, b"")),
        Skip::UnknownTarget
    );
    assert_eq!(plan(failed("late", "CardViewed", 1, b"")), Skip::NoTiers);
    let foreign = OwnedMessage::new(
        Some(b"{}".to_vec()),
        None,
        "failed".into(),
        Timestamp::NotAvailable,
        0,
        0,
        None,
    );
    assert_eq!(plan(foreign), Skip::NotParked);
}

#[test]
fn a_dead_letter_goes_back_to_its_source_marked_with_its_key() {
    let cfg = config();
    let req = request(FromTopic::DeadLetter, Filter::default());
    let planner = Planner::new(&cfg, &req).unwrap();
    let payload = br#"{"event":"CardViewed","id":"x"}"#;
    let out = planner
        .plan(&dead_letter(payload, b"user-1", &[]), at(0))
        .unwrap();
    assert_eq!(out.topic, "komo");
    assert_eq!(out.group, "komo");
    assert_eq!(out.payload, payload);
    assert_eq!(out.key.as_deref(), Some(b"user-1".as_slice()));
    assert_eq!(header(&out, "redriven").as_deref(), Some("true"));
    // Dead-lettered without a key: keyed `topic/partition/offset`, produced without one.
    let out = planner
        .plan(&dead_letter(payload, b"komo/2/41", &[]), at(0))
        .unwrap();
    assert_eq!(out.key, None);
}

#[test]
fn dead_letter_skips_loops_cut_records_foreign_topics_and_misses() {
    let mut cfg = config();
    let req = request(
        FromTopic::DeadLetter,
        Filter {
            event: Some("Card?iewed".into()),
            ..Filter::default()
        },
    );
    let card = br#"{"event":"CardViewed"}"#.as_slice();
    {
        let planner = Planner::new(&cfg, &req).unwrap();
        let plan = |payload: &[u8], extra: &[(&str, &str)]| {
            planner
                .plan(&dead_letter(payload, b"k", extra), at(0))
                .unwrap_err()
        };
        assert_eq!(plan(card, &[("redriven", "true")]), Skip::AlreadyRedriven);
        assert_eq!(plan(card, &[("truncated", "true")]), Skip::Truncated);
        for other in [
            br#"{"event":"QuizStarted"}"#.as_slice(),
            br#"{"event":5}"#,
            b"not json",
            br#"{"properties":{"event":"CardViewed"}}"#,
        ] {
            assert_eq!(plan(other, &[]), Skip::NotMatching);
        }
        let bare = OwnedMessage::new(
            Some(card.to_vec()),
            None,
            "dlq".into(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        assert_eq!(planner.plan(&bare, at(0)).unwrap_err(), Skip::NotDeadLetter);
    }
    cfg.sources[0].topic = "elsewhere".into();
    let planner = Planner::new(&cfg, &req).unwrap();
    let msg = dead_letter(card, b"k", &[]);
    assert_eq!(planner.plan(&msg, at(0)).unwrap_err(), Skip::NotASource);
}

#[test]
fn invalid_requests_are_named() {
    let mut cfg = config();
    let with = |from, filter| Planner::new(&cfg, &request(from, filter)).err();
    let target = |t: &str| Filter {
        target: Some(t.into()),
        ..Filter::default()
    };
    assert!(matches!(
        with(FromTopic::DeadLetter, target("crm")),
        Some(RedriveError::TargetWithDeadLetter)
    ));
    assert!(matches!(
        with(FromTopic::Failed, target("nope")),
        Some(RedriveError::UnknownTarget(t)) if t == "nope"
    ));
    let window = Filter {
        since: Some(at(5)),
        until: Some(at(5)),
        ..Filter::default()
    };
    assert!(matches!(
        with(FromTopic::Failed, window),
        Some(RedriveError::EmptyWindow)
    ));
    for e in [
        RedriveError::TargetWithDeadLetter,
        RedriveError::EmptyWindow,
        RedriveError::NoRetryTiers,
    ] {
        assert!(e.is_invalid_request(), "{e}");
    }
    assert_eq!(
        RedriveError::TargetWithDeadLetter.to_string(),
        "--target applies to --from failed"
    );
    cfg.retry_tiers.as_mut().unwrap().enabled = false;
    let err = Planner::new(&cfg, &request(FromTopic::Failed, Filter::default())).err();
    let err = err.expect("no tiers, no --from failed");
    assert!(err.to_string().contains("retry_tiers"), "{err}");
}

#[test]
fn the_summary_lists_targets_and_reasons_aligned() {
    let mut s = Summary {
        topic: "failed".into(),
        read: 6,
        ..Summary::default()
    };
    s.redriven.insert(("crm".into(), "retry.1m".into()), 12);
    s.redriven.insert(("ph".into(), "retry.1m".into()), 1);
    s.skipped.insert(Skip::NotMatching, 2);
    s.skipped.insert(Skip::UnknownTarget, 1);
    let text = s.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "read 6 records from failed");
    assert_eq!(lines[1], "redriven 13");
    assert_eq!(lines[2], "  crm  12  -> retry.1m");
    assert_eq!(lines[3], "  ph   1   -> retry.1m");
    assert_eq!(lines[4], "skipped 3");
    assert_eq!(lines[5], "  not_matching    2");
    assert_eq!(lines[6], "  unknown_target  1");
    assert_eq!(lines.len(), 7);
    s.dry_run = true;
    s.redriven = [(("komo".into(), "komo".into()), 4)].into();
    s.skipped.clear();
    let text = s.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "would redrive 4 (dry run: nothing produced)");
    assert_eq!(
        lines[2], "  komo  4",
        "the source topic is also where it goes"
    );
    assert_eq!(lines[3], "skipped 0");
}
