//! Routing configuration: `[[routes]]` entries and their `where` conditions.
//!
//! A condition is written as a table with a field and exactly one operator key
//! (`{ field = "site.id", equals = "s1" }`); it deserializes into [`Condition`], whose
//! [`Operator`] enum makes "exactly one operator" a fact of the type rather than a check
//! repeated at run time. A condition with zero or two operators, or a `matches` regex that does
//! not compile, is a load error with its key path.

use crate::envelope::Source;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A routing rule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name shown in logs and in `event-relay route` output.
    pub name: String,
    /// Envelope sources this route applies to (`komo`, `acemate`); empty: all.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Globs on the event name; `!glob` excludes; empty: all events.
    #[serde(default)]
    pub events: Vec<String>,
    /// Conditions on envelope fields that must all hold.
    #[serde(default, rename = "where")]
    pub conditions: Vec<Condition>,
    /// Targets (by name) that receive matching events.
    pub targets: Vec<String>,
    /// When false, stop evaluating further routes after this one matches.
    #[serde(default = "default_true", rename = "continue")]
    pub continue_: bool,
}

fn default_true() -> bool {
    true
}

/// One `where` condition: an envelope field by dotted path and its operator.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "ConditionTable", into = "ConditionTable")]
pub struct Condition {
    /// Dotted path into the envelope, e.g. `properties.courseType` or `site.id`.
    pub field: String,
    /// What the field's value must satisfy.
    pub op: Operator,
}

/// The test a condition applies to its field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    /// The field equals this value (numbers by value; a numeric string equals its number).
    Equals(Value),
    /// The field differs from this value (or is absent).
    NotEquals(Value),
    /// The field equals one of these values.
    In(Vec<Value>),
    /// The field equals none of these values (or is absent).
    NotIn(Vec<Value>),
    /// The field is present and not null (true) or absent/null (false).
    Exists(bool),
    /// The field is a string (or a number or boolean, as text) matching this regex.
    Matches(Pattern),
    /// The field is a number (or numeric string) greater than this.
    Gt(f64),
    /// ... greater than or equal to this.
    Gte(f64),
    /// ... less than this.
    Lt(f64),
    /// ... less than or equal to this.
    Lte(f64),
}

/// A regular expression compiled when the config is loaded; written as its source text.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        regex::Regex::new(&text)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex: {e}")))
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A condition table with zero or several operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("needs exactly one operator (equals, not_equals, in, not_in, exists, matches, gt, gte, lt, lte), found {0}")]
pub struct OperatorCount(pub usize);

/// A condition as written in TOML: the field and one key per operator (each documented on
/// its [`Operator`] variant).
#[derive(Default, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a condition table like { field = \"event\", equals = \"x\" }"
)]
struct ConditionTable {
    field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    in_: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_in: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matches: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lte: Option<f64>,
}

impl TryFrom<ConditionTable> for Condition {
    type Error = OperatorCount;

    fn try_from(t: ConditionTable) -> Result<Self, OperatorCount> {
        let ops: Vec<Operator> = [
            t.equals.map(Operator::Equals),
            t.not_equals.map(Operator::NotEquals),
            t.in_.map(Operator::In),
            t.not_in.map(Operator::NotIn),
            t.exists.map(Operator::Exists),
            t.matches.map(Operator::Matches),
            t.gt.map(Operator::Gt),
            t.gte.map(Operator::Gte),
            t.lt.map(Operator::Lt),
            t.lte.map(Operator::Lte),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Operator; 1]>::try_from(ops) {
            Ok([op]) => Ok(Condition { field: t.field, op }),
            Err(ops) => Err(OperatorCount(ops.len())),
        }
    }
}

impl From<Condition> for ConditionTable {
    fn from(c: Condition) -> Self {
        let mut t = ConditionTable {
            field: c.field,
            ..Default::default()
        };
        match c.op {
            Operator::Equals(v) => t.equals = Some(v),
            Operator::NotEquals(v) => t.not_equals = Some(v),
            Operator::In(v) => t.in_ = Some(v),
            Operator::NotIn(v) => t.not_in = Some(v),
            Operator::Exists(v) => t.exists = Some(v),
            Operator::Matches(v) => t.matches = Some(v),
            Operator::Gt(v) => t.gt = Some(v),
            Operator::Gte(v) => t.gte = Some(v),
            Operator::Lt(v) => t.lt = Some(v),
            Operator::Lte(v) => t.lte = Some(v),
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Condition, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn error(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn one_operator_per_condition() {
        let c = parse(json!({ "field": "site.id", "in": ["a", "b"] })).unwrap();
        assert_eq!(c.op, Operator::In(vec![json!("a"), json!("b")]));
        let two = error(json!({ "field": "event", "equals": "a", "gt": 1 }));
        assert!(two.starts_with("needs exactly one operator"), "{two}");
        assert!(two.contains("found 2"), "{two}");
        let none = error(json!({ "field": "event" }));
        assert!(none.contains("found 0"), "{none}");
        let re = error(json!({ "field": "event", "matches": "(" }));
        assert!(re.starts_with("invalid regex"), "{re}");
        let typo = error(json!({ "field": "event", "equal": "a" }));
        assert!(typo.contains("unknown field `equal`"), "{typo}");
    }

    #[test]
    fn serializes_back_to_the_table_it_was_read_from() {
        for table in [
            json!({ "field": "event", "equals": "CardViewed" }),
            json!({ "field": "properties.score", "gte": 5.0 }),
            json!({ "field": "site.id", "not_in": ["a", 1] }),
            json!({ "field": "user.email", "exists": false }),
            json!({ "field": "event", "matches": "^Card" }),
        ] {
            let c = parse(table.clone()).unwrap();
            assert_eq!(serde_json::to_value(&c).unwrap(), table);
        }
    }
}
