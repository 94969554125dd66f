//! The event catalogs (`catalog/komo.json`, `catalog/acemate.json`) compiled into validators.
//!
//! The catalogs are data generated from `../shared/specs/` by `scripts/gen_catalog.py` and
//! embedded at build time; [`Catalogs::builtin`] compiles them once at start-up. Each property
//! rule (type, required, nullable, enum, format) becomes a [`Prop`] checked without allocation
//! on the happy path.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

const KOMO_JSON: &str = include_str!("../catalog/komo.json");
const ACEMATE_JSON: &str = include_str!("../catalog/acemate.json");

#[derive(Deserialize)]
struct RawCatalog {
    catalog: String,
    #[serde(default)]
    common: BTreeMap<String, RawProp>,
    #[serde(default)]
    identify: BTreeMap<String, RawProp>,
    events: BTreeMap<String, RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    properties: BTreeMap<String, RawProp>,
    #[serde(default)]
    extra_keys: Option<String>,
}

#[derive(Deserialize)]
struct RawProp {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    nullable: bool,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "enum")]
    enum_values: Option<Vec<Value>>,
    #[serde(default)]
    items: Option<Box<RawProp>>,
}

/// JSON type of a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

/// String formats the catalogs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Uuid,
    Email,
    DateTime,
    Uri,
}

/// One compiled property rule.
#[derive(Debug)]
pub struct Prop {
    pub name: String,
    pub ty: PropType,
    pub required: bool,
    pub nullable: bool,
    pub format: Option<Format>,
    pub enum_values: Option<HashSet<String>>,
    pub items: Option<Box<Prop>>,
}

/// One catalog event.
#[derive(Debug)]
pub struct EventSchema {
    pub name: String,
    pub properties: HashMap<String, Prop>,
    /// Komo: the spec says user attributes / data-capture fields ride along as extra keys.
    pub extra_keys: bool,
}

/// One compiled catalog.
#[derive(Debug)]
pub struct Catalog {
    pub name: String,
    /// Fields every event of this catalog has (Komo's id, site_id, ...).
    pub common: HashMap<String, Prop>,
    /// acemate's Identify property set.
    pub identify: HashMap<String, Prop>,
    pub events: HashMap<String, EventSchema>,
}

/// Both catalogs.
#[derive(Debug)]
pub struct Catalogs {
    pub komo: Catalog,
    pub acemate: Catalog,
}

fn compile_prop(name: &str, raw: &RawProp) -> Result<Prop, String> {
    let ty = match raw.ty.as_str() {
        "string" => PropType::String,
        "number" => PropType::Number,
        "integer" => PropType::Integer,
        "boolean" => PropType::Boolean,
        "array" => PropType::Array,
        "object" => PropType::Object,
        other => return Err(format!("property {name}: unknown type {other:?}")),
    };
    let format = match raw.format.as_deref() {
        None => None,
        Some("uuid") => Some(Format::Uuid),
        Some("email") => Some(Format::Email),
        Some("date-time") => Some(Format::DateTime),
        Some("uri") => Some(Format::Uri),
        Some(other) => return Err(format!("property {name}: unknown format {other:?}")),
    };
    let enum_values = raw.enum_values.as_ref().map(|vals| {
        vals.iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    });
    let items = match &raw.items {
        Some(i) => Some(Box::new(compile_prop(&format!("{name}[]"), i)?)),
        None => None,
    };
    Ok(Prop {
        name: name.to_string(),
        ty,
        required: raw.required,
        nullable: raw.nullable,
        format,
        enum_values,
        items,
    })
}

fn compile_map(raw: &BTreeMap<String, RawProp>) -> Result<HashMap<String, Prop>, String> {
    raw.iter()
        .map(|(k, v)| compile_prop(k, v).map(|p| (k.clone(), p)))
        .collect()
}

impl Catalog {
    /// Compiles a catalog from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawCatalog = serde_json::from_str(text).map_err(|e| format!("catalog: {e}"))?;
        let mut events = HashMap::new();
        for (name, ev) in &raw.events {
            events.insert(
                name.clone(),
                EventSchema {
                    name: name.clone(),
                    properties: compile_map(&ev.properties)
                        .map_err(|e| format!("{}: event {name}: {e}", raw.catalog))?,
                    extra_keys: ev.extra_keys.as_deref().is_some_and(|k| k != "none"),
                },
            );
        }
        Ok(Self {
            common: compile_map(&raw.common)?,
            identify: compile_map(&raw.identify)?,
            name: raw.catalog,
            events,
        })
    }
}

impl Catalogs {
    /// The catalogs shipped in the binary.
    pub fn builtin() -> Result<Self, String> {
        Ok(Self {
            komo: Catalog::from_json(KOMO_JSON)?,
            acemate: Catalog::from_json(ACEMATE_JSON)?,
        })
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_format(f: Format, s: &str) -> Result<(), &'static str> {
    let ok = match f {
        // The specs' pattern: 8-4-4-4-12 hex with a version digit of 1-8.
        Format::Uuid => {
            s.len() == 36
                && uuid::Uuid::parse_str(s).is_ok()
                && matches!(s.as_bytes()[14], b'1'..=b'8')
        }
        Format::Email => is_email(s),
        Format::DateTime => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        Format::Uri => url::Url::parse(s).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(match f {
            Format::Uuid => "not a valid uuid",
            Format::Email => "not a valid email address",
            Format::DateTime => "not a valid RFC 3339 date-time",
            Format::Uri => "not a valid URI",
        })
    }
}

fn coerce_string(ty: PropType, s: &str) -> Option<Value> {
    let t = s.trim();
    match ty {
        PropType::Number => {
            if let Ok(i) = t.parse::<i64>() {
                return Some(Value::from(i));
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        }
        PropType::Integer => t.parse::<i64>().ok().map(Value::from),
        PropType::Boolean => match t {
            "true" | "True" | "TRUE" | "1" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Prop {
    /// Checks (and, with `coerce`, converts string-encoded numbers/booleans in place) one value.
    /// Problems are pushed as `<path>: <rule>`.
    pub fn check(&self, value: &mut Value, path: &str, coerce: bool, problems: &mut Vec<String>) {
        if value.is_null() {
            if !self.nullable {
                problems.push(format!("{path}: must not be null"));
            }
            return;
        }
        let type_ok = match (self.ty, &*value) {
            (PropType::String, Value::String(_)) => true,
            (PropType::Number, Value::Number(_)) => true,
            (PropType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (PropType::Boolean, Value::Bool(_)) => true,
            (PropType::Array, Value::Array(_)) => true,
            (PropType::Object, Value::Object(_)) => true,
            _ => false,
        };
        if !type_ok {
            let coerced = match (&*value, coerce) {
                (Value::String(s), true) => coerce_string(self.ty, s),
                _ => None,
            };
            match coerced {
                Some(v) => *value = v,
                None => {
                    problems.push(format!(
                        "{path}: expected {}, got {}",
                        format!("{:?}", self.ty).to_lowercase(),
                        type_name(value)
                    ));
                    return;
                }
            }
        }
        match value {
            Value::String(s) => {
                if let Some(f) = self.format {
                    if let Err(rule) = check_format(f, s) {
                        problems.push(format!("{path}: {rule}"));
                    }
                }
                if let Some(allowed) = &self.enum_values {
                    if !allowed.contains(s.as_str()) {
                        problems.push(format!(
                            "{path}: value {s:?} is not one of the allowed values"
                        ));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for (i, v) in items.iter_mut().enumerate() {
                        item.check(v, &format!("{path}[{i}]"), coerce, problems);
                    }
                }
            }
            Value::Number(n) => {
                if let Some(allowed) = &self.enum_values {
                    if !allowed.contains(&n.to_string()) {
                        problems.push(format!(
                            "{path}: value {n} is not one of the allowed values"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks the properties of `map` that `schema` defines and reports missing required ones.
pub fn check_props(
    schema: &HashMap<String, Prop>,
    map: &mut Map<String, Value>,
    prefix: &str,
    coerce: bool,
    enforce_required: bool,
    problems: &mut Vec<String>,
) {
    for (name, prop) in schema {
        match map.get_mut(name) {
            Some(v) => prop.check(v, &format!("{prefix}{name}"), coerce, problems),
            None if prop.required && enforce_required => {
                problems.push(format!("{prefix}{name}: required property missing"))
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogs_compile() {
        let c = Catalogs::builtin().unwrap();
        assert_eq!(c.komo.events.len(), 10);
        assert_eq!(c.acemate.events.len(), 71);
        assert!(c.acemate.identify.contains_key("email"));
        assert!(c.komo.common.contains_key("site_id"));
    }

    #[test]
    fn rules_reject_and_coerce() {
        let c = Catalogs::builtin().unwrap();
        let score = &c.komo.events["CardViewed"].properties["score"];
        let mut v = Value::from("7");
        let mut p = vec![];
        score.check(&mut v, "score", true, &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(v, Value::from(7));
        let mut bad = Value::from("abc");
        score.check(&mut bad, "score", true, &mut p);
        assert_eq!(p, vec!["score: expected number, got string".to_string()]);
        let mut p = vec![];
        let email = &c.acemate.identify["email"];
        email.check(&mut Value::from("nope"), "email", false, &mut p);
        assert!(p[0].contains("email"), "{p:?}");
    }
}
