//! The tracking-plan rules: which catalog rule a validation problem broke, as one short,
//! bounded name (the `rule` label of `event_relay_validation_problems_total`, and the
//! grouping of `event-relay normalize --summary`).
//!
//! Problems are the `<path>: <message>` strings the checker (`check.rs`) and the normalizers
//! push; [`rule_of`] is the one place that maps a message to its rule. A new kind of check
//! adds its message here (anything unmapped counts as [`Rule::Other`]).

use crate::envelope::ValidationStatus;

/// A catalog rule, as the metric label and the report name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A required property (or Komo's data-capture fields, or an Identify property) is missing.
    Required,
    /// The value has the wrong JSON type (after the source's coercions).
    Type,
    /// `null` where the property is not nullable.
    Null,
    /// The value is not one of the property's allowed values.
    Enum,
    /// The string is not of the property's format (uuid, guid, date-time, email, uri).
    Format,
    /// The event's name is not in its catalog.
    UnknownEvent,
    /// Any problem no rule above names.
    Other,
}

impl Rule {
    /// Every rule, in label order: the fixed label set.
    pub const ALL: [Rule; 7] = [
        Rule::Required,
        Rule::Type,
        Rule::Null,
        Rule::Enum,
        Rule::Format,
        Rule::UnknownEvent,
        Rule::Other,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::Null => "null",
            Rule::Enum => "enum",
            Rule::Format => "format",
            Rule::UnknownEvent => "unknown_event",
            Rule::Other => "other",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a problem into its property path and message (`properties.score: expected number,
/// got string` → `properties.score`, `expected number, got string`). A problem without a path
/// has an empty one.
pub fn split_problem(problem: &str) -> (&str, &str) {
    problem.split_once(": ").unwrap_or(("", problem))
}

/// The rule a validation problem broke: the one problem → rule mapping.
pub fn rule_of(problem: &str) -> Rule {
    let (_, message) = split_problem(problem);
    if message.starts_with("required ") && message.contains("property missing") {
        Rule::Required
    } else if message.starts_with("expected ") && message.contains(", got ") {
        Rule::Type
    } else if message == "must not be null" {
        Rule::Null
    } else if message.ends_with("is not one of the allowed values") {
        Rule::Enum
    } else if message.starts_with("not a valid ") || message.contains(" is not a valid ") {
        Rule::Format
    } else {
        Rule::Other
    }
}

/// The rules an event's validation broke, one per problem, plus [`Rule::UnknownEvent`] for an
/// event its catalog does not know.
pub fn rules_of<'a>(
    status: ValidationStatus,
    problems: &'a [String],
) -> impl Iterator<Item = Rule> + 'a {
    let unknown = (status == ValidationStatus::UnknownEvent).then_some(Rule::UnknownEvent);
    unknown
        .into_iter()
        .chain(problems.iter().map(|p| rule_of(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{check_props, Catalog};
    use serde_json::{json, Value};

    /// Every kind of problem the checker emits maps to its own rule, none to `other`.
    #[test]
    fn every_checker_problem_maps_to_its_rule() {
        let c = Catalog::from_json(
            r#"{"catalog": "t", "events": {"e": {"properties": {
                "n": {"type": "number"},
                "s": {"type": "string"},
                "k": {"type": "string", "enum": ["a", "b"]},
                "i": {"type": "integer", "enum": [1, 2]},
                "g": {"type": "string", "format": "guid"},
                "u": {"type": "string", "format": "uuid"},
                "m": {"type": "string", "format": "email"},
                "d": {"type": "string", "format": "date-time"},
                "l": {"type": "string", "format": "uri"},
                "a": {"type": "array", "items": {"type": "integer"}},
                "r": {"type": "string", "required": true}
            }}}}"#,
        )
        .unwrap();
        let cases: [(&str, Value, Rule); 11] = [
            ("n", json!("x"), Rule::Type),
            ("s", Value::Null, Rule::Null),
            ("k", json!("c"), Rule::Enum),
            ("i", json!(3), Rule::Enum),
            ("g", json!("nope"), Rule::Format),
            ("u", json!("nope"), Rule::Format),
            ("m", json!("nope"), Rule::Format),
            ("d", json!("nope"), Rule::Format),
            ("l", json!("nope"), Rule::Format),
            ("a", json!([1, "x"]), Rule::Type),
            ("r", Value::Null, Rule::Null),
        ];
        let schema = &c.events["e"].properties;
        for (name, value, rule) in cases {
            let mut map = serde_json::Map::new();
            map.insert(name.into(), value);
            map.insert(
                "r".into(),
                map.get("r").cloned().unwrap_or(json!("present")),
            );
            let mut problems = vec![];
            check_props(schema, &mut map, "properties.", false, true, &mut problems);
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert_eq!(rule_of(&problems[0]), rule, "{}", problems[0]);
        }
        let mut problems = vec![];
        check_props(
            schema,
            &mut serde_json::Map::new(),
            "",
            false,
            true,
            &mut problems,
        );
        assert_eq!(problems, vec!["r: required property missing".to_string()]);
        assert_eq!(rule_of(&problems[0]), Rule::Required);
    }

    #[test]
    fn normalizer_problems_map_and_the_rest_is_other() {
        for (problem, rule) in [
            ("data_capture_fields: required property missing (the submitted form's fields, sent as separate keys)", Rule::Required),
            ("user.traits.email: required Identify property missing", Rule::Required),
            ("uuid: \"x\" is not a valid uuid", Rule::Format),
            ("properties: expected object, got string", Rule::Type),
            ("something new happened", Rule::Other),
            ("a.b: frobnicated", Rule::Other),
        ] {
            assert_eq!(rule_of(problem), rule, "{problem}");
        }
        assert_eq!(
            split_problem("properties.score: expected number, got string"),
            ("properties.score", "expected number, got string")
        );
        assert_eq!(split_problem("no path"), ("", "no path"));
    }

    #[test]
    fn an_unknown_event_counts_once_plus_its_problems() {
        let problems = vec!["site_id: not a valid GUID (8-4-4-4-12 hex digits)".to_string()];
        let rules: Vec<Rule> = rules_of(ValidationStatus::UnknownEvent, &problems).collect();
        assert_eq!(rules, vec![Rule::UnknownEvent, Rule::Format]);
        assert_eq!(rules_of(ValidationStatus::Valid, &[]).count(), 0);
        let labels: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "required",
                "type",
                "null",
                "enum",
                "format",
                "unknown_event",
                "other"
            ]
        );
    }
}
