use super::*;
use serde_json::json;

const SITE: &str = "0fdbb943-511c-4220-9266-31465374f43b";

fn komo(event: &str, extra: Value) -> Vec<u8> {
    let mut m = json!({
        "id": "1e9b2c8a-0d4c-4d3b-9a51-8f0c6f1f6a01",
        "event": event,
        "timestamp": "2026-01-05T10:00:00Z",
        "site_id": SITE,
        "site_name": "Hub",
        "user_session_id": "2e9b2c8a-0d4c-4d3b-9a51-8f0c6f1f6a02",
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    serde_json::to_vec(&m).unwrap()
}

fn prop(
    ty: &'static str,
    format: Option<&'static str>,
    required: bool,
    nullable: bool,
) -> DraftProp {
    DraftProp {
        ty,
        format,
        required,
        nullable,
    }
}

#[test]
fn komo_types_and_formats_are_inferred_with_its_coercions() {
    let n = Normalizer::builtin().unwrap();
    let mut inf = Inferrer::new(&n, SourceFormat::Komo);
    inf.add_line(&komo(
        "PrizeAwarded",
        json!({"prize": "Mug", "points": "12", "ratio": "0.5",
        "won": "true", "prize_id": SITE, "at": "2026-01-05T10:00:00Z", "contact": "a@b.example",
        "link": "https://komo.example/p", "postcode": "0200", "tags": ["a"], "meta": {"x": 1}}),
    ));
    inf.add_line(&komo("PrizeAwarded", json!({"prize": "Cap", "points": 3, "ratio": "2",
        "won": "FALSE", "prize_id": SITE, "at": "2026-01-06T10:00:00+02:00", "contact": "c@d.example",
        "link": "https://komo.example/q", "postcode": "2000", "tags": [], "meta": {}, "note": null})));
    inf.add_line(&komo("CardViewed", json!({})));
    assert_eq!(
        inf.stats,
        InferStats {
            lines: 3,
            known: 1,
            unknown: 2,
            rejected: 0
        }
    );
    let d = inf.draft(Source::Komo);
    let p = &d.events["PrizeAwarded"].properties;
    assert_eq!(p["prize"], prop("string", None, true, false));
    assert_eq!(p["points"], prop("integer", None, true, false));
    assert_eq!(p["ratio"], prop("number", None, true, false));
    assert_eq!(p["won"], prop("boolean", None, true, false));
    assert_eq!(p["prize_id"], prop("string", Some("guid"), true, false));
    assert_eq!(p["at"], prop("string", Some("date-time"), true, false));
    assert_eq!(p["contact"], prop("string", Some("email"), true, false));
    assert_eq!(p["link"], prop("string", Some("uri"), true, false));
    assert_eq!(p["postcode"], prop("string", None, true, false));
    assert_eq!(p["tags"], prop("array", None, true, false));
    assert_eq!(p["meta"], prop("object", None, true, false));
    assert_eq!(p["note"], prop("string", None, false, true));
    assert!(!p.contains_key("site_id"), "common fields are not drafted");
    assert!(
        !d.events.contains_key("CardViewed"),
        "known events are not drafted"
    );
    assert_eq!(d.events["PrizeAwarded"].extra_keys, Some("user_attributes"));
    assert!(
        d.user_attributes.is_empty(),
        "one unknown type says nothing"
    );
    assert_eq!(
        d.warnings,
        vec!["PrizeAwarded.note: only null seen; drafted as a nullable string".to_string()]
    );
}

#[test]
fn keys_in_every_unknown_type_are_user_attributes() {
    let n = Normalizer::builtin().unwrap();
    let mut inf = Inferrer::new(&n, SourceFormat::Auto);
    inf.add_line(&komo(
        "PrizeAwarded",
        json!({"prize": "Mug", "favourite_team": "Reds", "email": "a@b.example"}),
    ));
    inf.add_line(&komo(
        "QuizDone",
        json!({"score": 3, "favourite_team": "Blues", "email": "c@d.example"}),
    ));
    inf.add_line(&komo(
        "PollVoted",
        json!({"option": "A", "favourite_team": "Reds", "email": "e@f.example", "score": 1}),
    ));
    let d = inf.draft(Source::Komo);
    assert_eq!(
        d.user_attributes,
        vec!["email".to_string(), "favourite_team".to_string()]
    );
    assert_eq!(d.events.len(), 3);
    for ev in d.events.values() {
        assert!(!ev.properties.contains_key("favourite_team"));
        assert!(!ev.properties.contains_key("email"));
    }
    assert_eq!(d.events["QuizDone"].properties["score"].ty, "integer");
    assert!(
        d.events["PollVoted"].properties.contains_key("score"),
        "in two of three types only"
    );
    assert_eq!(inf.sources_seen(), vec![Source::Komo]);
}

#[test]
fn conflicting_types_take_the_most_seen_and_warn() {
    let n = Normalizer::builtin().unwrap();
    let mut inf = Inferrer::new(&n, SourceFormat::Komo);
    for v in [json!("a"), json!("b"), json!({"k": 1})] {
        inf.add_line(&komo("Mixed", json!({ "v": v })));
    }
    let d = inf.draft(Source::Komo);
    assert_eq!(
        d.events["Mixed"].properties["v"],
        prop("string", None, true, false)
    );
    assert_eq!(
        d.warnings,
        vec!["Mixed.v: seen as object (1), string (2); drafted as string".to_string()]
    );
}

#[test]
fn acemate_drafts_without_coercion_and_without_posthog_keys() {
    let n = Normalizer::builtin().unwrap();
    let mut inf = Inferrer::new(&n, SourceFormat::Acemate);
    let line = json!({"event": "deck_archived", "distinct_id": "u1",
        "uuid": "0fdbb943-511c-4220-9266-31465374f43b",
        "properties": {"deckId": "0fdbb943-511c-4220-9266-31465374f43b", "count": "3",
            "$session_id": "s", "email": "a@b.example"}});
    inf.add_line(&serde_json::to_vec(&line).unwrap());
    inf.add_line(b"not json");
    assert_eq!(inf.stats.rejected, 1);
    let d = inf.draft(Source::Acemate);
    let p = &d.events["deck_archived"].properties;
    assert_eq!(p["deckId"], prop("string", Some("uuid"), true, false));
    assert_eq!(p["count"], prop("string", None, true, false));
    assert!(!p.contains_key("$session_id"));
    assert!(
        !p.contains_key("email"),
        "an Identify property, not the event's"
    );
    assert_eq!(d.events["deck_archived"].extra_keys, None);
}

/// The draft is a catalog file the loader compiles.
#[test]
fn the_draft_compiles_as_a_catalog() {
    let n = Normalizer::builtin().unwrap();
    let mut inf = Inferrer::new(&n, SourceFormat::Komo);
    inf.add_line(&komo(
        "PrizeAwarded",
        json!({"prize": "Mug", "prize_id": SITE, "n": "1"}),
    ));
    let text = serde_json::to_string(&inf.draft(Source::Komo)).unwrap();
    let c = Catalog::from_json(&text).unwrap();
    let ev = &c.events["PrizeAwarded"];
    assert_eq!(ev.properties.len(), 3);
    assert!(ev.extra_keys);
}
