use super::*;
use http_body_util::BodyExt;
use serde_json::Value;
use std::cell::Cell;

fn tap(include_payloads: bool) -> Arc<Tap> {
    Arc::new(Tap::new(true, include_payloads, &Metrics::new()))
}

fn request(query: &str) -> Request {
    Request::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// The next line of `s` as JSON (`None` once the stream ended).
async fn next(s: &mut Subscription) -> Option<Value> {
    let frame = s.frame().await?.expect("infallible");
    let data = frame.into_data().expect("a data frame");
    assert_eq!(data.last(), Some(&b'\n'), "one line per frame");
    Some(serde_json::from_slice(&data).expect("a JSON line"))
}

#[test]
fn without_a_client_no_line_is_built() {
    let tap = tap(false);
    let built = Cell::new(0);
    let env = crate::envelope::sample();
    let offer = || {
        tap.offer(|| {
            built.set(built.get() + 1);
            Line::of(Stage::Consumed, &env)
        })
    };
    offer();
    assert!(!tap.active());
    assert_eq!((built.get(), tap.lines_built()), (0, 0));

    let subscription = tap.subscribe(Request::default()).expect("tap on");
    assert!(tap.active());
    offer();
    assert_eq!((built.get(), tap.lines_built()), (1, 1));

    drop(subscription);
    assert!(!tap.active(), "a client that left is forgotten");
    offer();
    assert_eq!((built.get(), tap.lines_built()), (1, 1));
}

#[test]
fn a_tap_that_is_off_takes_no_client() {
    let tap = Arc::new(Tap::new(false, false, &Metrics::new()));
    assert!(matches!(
        tap.subscribe(Request::default()),
        Err(SubscribeError::Off)
    ));
    assert!(SubscribeError::Off.to_string().contains("tap = true"));
}

#[test]
fn filters_take_stages_targets_and_event_globs() {
    let f = request(
        "stage=delivered,%20failed&target=crm&target=warehouse&event=Card*&event=!CardSkipped",
    )
    .filter;
    let line = |stage, event, target| {
        let mut l = Line::new(stage, "komo");
        l.event = event;
        l.target = target;
        l
    };
    assert!(f.matches(&line(Stage::Delivered, Some("CardViewed"), Some("crm"))));
    assert!(f.matches(&line(
        Stage::Failed,
        Some("CardAnswered"),
        Some("warehouse")
    )));
    assert!(
        !f.matches(&line(Stage::Routed, Some("CardViewed"), Some("crm"))),
        "stage"
    );
    assert!(
        !f.matches(&line(Stage::Delivered, Some("CardViewed"), Some("posthog"))),
        "target"
    );
    assert!(
        !f.matches(&line(Stage::Delivered, Some("CardViewed"), None)),
        "no target"
    );
    assert!(
        !f.matches(&line(Stage::Delivered, Some("SiteViewed"), Some("crm"))),
        "glob"
    );
    assert!(
        !f.matches(&line(Stage::Delivered, Some("CardSkipped"), Some("crm"))),
        "excluded"
    );
    assert!(
        !f.matches(&line(Stage::Delivered, None, Some("crm"))),
        "no event name"
    );

    let all = request("").filter;
    for stage in Stage::ALL {
        assert!(all.matches(&line(stage, None, None)), "{stage:?}");
    }
    assert_eq!(request("limit=3").limit, Some(3));
    assert_eq!(
        request("stage=dead_lettered").filter.stages,
        Stage::DeadLettered.bit()
    );
}

#[test]
fn bad_queries_are_refused_with_the_reason() {
    for (query, needle) in [
        ("stage=delivered,sent", "\"sent\": not a stage"),
        ("limit=0", "limit \"0\""),
        ("limit=many", "limit \"many\""),
        ("events=Card*", "unknown parameter \"events\""),
    ] {
        let e = Request::parse(query).expect_err(query);
        assert!(e.to_string().contains(needle), "{query}: {e}");
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_loses_lines_and_is_told_how_many() {
    let tap = tap(false);
    let mut s = tap.subscribe(Request::default()).expect("tap on");
    let env = crate::envelope::sample();
    let offered = QUEUE_LINES + 25;
    for _ in 0..offered {
        tap.offer(|| Line::of(Stage::Normalized, &env).outcome("valid"));
    }
    let first = next(&mut s).await.expect("a line");
    assert_eq!(first["dropped"], 25, "{first}");
    assert_eq!(first["dropped_total"], 25, "{first}");
    for _ in 0..QUEUE_LINES {
        let line = next(&mut s).await.expect("a queued line");
        assert_eq!(line["stage"], "normalized");
    }
    tap.offer(|| Line::of(Stage::Routed, &env).target("crm"));
    let last = next(&mut s).await.expect("a line after the queue drained");
    assert_eq!(
        (&last["stage"], &last["target"]),
        (&"routed".into(), &"crm".into())
    );
    assert!(
        last.get("dropped").is_none(),
        "nothing more was lost: {last}"
    );
}

#[tokio::test]
async fn lines_carry_the_envelope_only_with_payloads_on() {
    let env = crate::envelope::sample();
    for (payloads, has_envelope) in [(false, false), (true, true)] {
        let tap = tap(payloads);
        let mut s = tap.subscribe(Request::default()).expect("tap on");
        tap.offer(|| Line::of(Stage::Consumed, &env));
        let line = next(&mut s).await.expect("a line");
        assert_eq!(line["id"], env.id.as_str());
        assert_eq!(line["event"], env.event.as_str());
        assert_eq!(line["source"], env.source.as_str());
        assert_eq!(line["target"], Value::Null);
        assert!(
            line["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert_eq!(line.get("envelope").is_some(), has_envelope, "{line}");
        if has_envelope {
            assert_eq!(line["envelope"]["id"], env.id.as_str());
        }
    }
}

#[tokio::test]
async fn a_stream_ends_at_its_limit_and_when_the_relay_stops() {
    let tap = tap(false);
    let env = crate::envelope::sample();
    let mut limited = tap.subscribe(request("limit=2")).expect("tap on");
    let mut open = tap.subscribe(Request::default()).expect("tap on");
    for _ in 0..3 {
        tap.offer(|| Line::of(Stage::Consumed, &env));
    }
    assert!(next(&mut limited).await.is_some());
    assert!(next(&mut limited).await.is_some());
    assert!(next(&mut limited).await.is_none(), "limit reached");

    tap.close();
    assert!(!tap.active());
    for _ in 0..3 {
        assert!(
            next(&mut open).await.is_some(),
            "queued lines are still sent"
        );
    }
    assert!(next(&mut open).await.is_none(), "then the stream ends");
    assert!(matches!(
        tap.subscribe(Request::default()),
        Err(SubscribeError::Closed)
    ));
}

#[test]
fn at_most_max_clients_at_once() {
    let tap = tap(false);
    let clients: Vec<_> = (0..MAX_CLIENTS)
        .map(|_| tap.subscribe(Request::default()).expect("room"))
        .collect();
    assert!(matches!(
        tap.subscribe(Request::default()),
        Err(SubscribeError::Full)
    ));
    drop(clients);
    assert!(tap.subscribe(Request::default()).is_ok());
}
