use super::*;
use serde_json::json;

fn text_props(text: &str, entries: &[(&str, Option<&str>, Value)]) -> Props {
    // Names and string values as spans of `text` where they occur in it, else owned.
    let src: Arc<str> = Arc::from(text);
    let at = |part: &str| {
        src.find(part)
            .map(|i| Span::of(&src, &src[i..i + part.len()]).unwrap())
    };
    let entries = entries
        .iter()
        .map(|(name, s, v)| {
            let name = at(name).map_or(PropName::Own(name.to_string()), PropName::At);
            let slot = match s.and_then(&at) {
                Some(span) => PropSlot::At(span),
                None => PropSlot::Own(v.clone()),
            };
            (name, slot)
        })
        .collect();
    Props::from_parsed(src, entries)
}

#[test]
fn sorted_last_duplicate_wins_and_writes_like_a_map() {
    let p = text_props(
        "zeta alpha one two mid",
        &[
            ("zeta", Some("one"), json!(null)),
            ("alpha", None, json!(5)),
            ("zeta", Some("two"), json!(null)),
            ("mid", None, json!({"b": [1, 2.5], "a": "x\"y"})),
        ],
    );
    let map: Map<String, Value> = serde_json::from_value(json!({
        "zeta": "two", "alpha": 5, "mid": {"b": [1, 2.5], "a": "x\"y"}
    }))
    .unwrap();
    assert_eq!(p.borrowed(), 1);
    assert_eq!(p.keys().collect::<Vec<_>>(), ["alpha", "mid", "zeta"]);
    let mut buf = Vec::new();
    p.write_json(&mut buf);
    assert_eq!(buf, serde_json::to_vec(&map).unwrap());
    assert_eq!(
        serde_json::to_vec(&p).unwrap(),
        serde_json::to_vec(&map).unwrap()
    );
    assert_eq!(p.to_map(), map);
    assert_eq!(p, Props::from(map));
}

#[test]
fn reads_and_changes_make_owned_values_only_where_asked() {
    let mut p = text_props(
        "name value other",
        &[
            ("name", Some("value"), json!(null)),
            ("other", Some("other"), json!(null)),
        ],
    );
    assert_eq!(p.get("name").unwrap().as_str(), Some("value"));
    assert!(p.get("missing").is_none());
    *p.get_mut("name").unwrap() = json!(3);
    assert_eq!(p.get("name").unwrap(), PropRef::Value(&json!(3)));
    assert_eq!(p.borrowed(), 1);
    assert_eq!(p.insert("new".into(), json!(true)), None);
    assert_eq!(p.insert("new".into(), json!(false)), Some(json!(true)));
    assert_eq!(p.remove("other"), Some(json!("other")));
    assert_eq!(
        p.to_map(),
        serde_json::from_value::<Map<String, Value>>(json!({"name": 3, "new": false})).unwrap()
    );
}

#[test]
fn moving_entries_keeps_them_borrowed_and_later_ones_win() {
    let mut p = text_props(
        "a b c x y",
        &[
            ("a", Some("x"), json!(null)),
            ("b", Some("y"), json!(null)),
            ("c", None, json!(1)),
        ],
    );
    let mut traits: Props = [("b".to_string(), json!("old")), ("z".to_string(), json!(0))]
        .into_iter()
        .collect();
    let moved = p.split_off_by(|k| k != "c");
    assert_eq!(moved.borrowed(), 2);
    traits.absorb(moved);
    assert_eq!(traits.borrowed(), 2);
    assert_eq!(
        traits.to_map(),
        serde_json::from_value::<Map<String, Value>>(json!({"a": "x", "b": "y", "z": 0})).unwrap()
    );
    assert_eq!(p.keys().collect::<Vec<_>>(), ["c"]);
    // Into a Props over another text: copied, still later wins.
    let mut other = text_props("q", &[("q", None, json!(1))]);
    other.absorb(traits);
    assert_eq!(other.len(), 4);
    assert_eq!(other.get("b").unwrap().as_str(), Some("y"));
}

#[test]
fn spans_only_of_the_text() {
    let text = "abc";
    assert!(Span::of(text, &text[1..]).is_some());
    assert!(Span::of(text, "elsewhere").is_none());
}
