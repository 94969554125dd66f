//! The catalog JSON as written (`Raw*`), merging a catalog file over it, and compiling the
//! result into [`Catalog`] rules.

use super::{Catalog, CatalogError, EventSchema, Format, NameMap, Prop, PropType, UserAttributes};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One catalog as written: a built-in catalog, or a catalog file holding what it adds or
/// changes (`common` / `identify` absent: unchanged).
#[derive(Deserialize)]
pub(crate) struct RawCatalog {
    pub catalog: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub common: Option<BTreeMap<String, RawProp>>,
    #[serde(default)]
    pub identify: Option<BTreeMap<String, RawProp>>,
    #[serde(default)]
    pub events: BTreeMap<String, RawEvent>,
    #[serde(default)]
    pub user_attributes: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct RawEvent {
    #[serde(default)]
    pub properties: BTreeMap<String, RawProp>,
    #[serde(default)]
    pub extra_keys: Option<String>,
    #[serde(default)]
    pub deprecated: Option<bool>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct RawProp {
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
    #[serde(default)]
    pattern: Option<String>,
}

/// Compiles a `pattern` with bounded compiled size, so a regex bomb is an error, not a stall
/// or an allocation of gigabytes (the `regex` crate matches in linear time once compiled).
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
}

impl RawCatalog {
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Applies a catalog file over this catalog: its events are added, or their properties
    /// added/replaced one by one; `common`/`identify` are replaced when the file has them.
    pub fn apply(&mut self, file: RawCatalog) {
        let file_version = file.version;
        if let Some(common) = file.common {
            self.common = Some(common);
        }
        if let Some(identify) = file.identify {
            self.identify = Some(identify);
        }
        for (name, ev) in file.events {
            let version = ev.version.or_else(|| file_version.clone());
            match self.events.get_mut(&name) {
                Some(base) => {
                    base.properties.extend(ev.properties);
                    if ev.extra_keys.is_some() {
                        base.extra_keys = ev.extra_keys;
                    }
                    if ev.deprecated.is_some() {
                        base.deprecated = ev.deprecated;
                    }
                    base.version = version.or(base.version.take());
                }
                None => {
                    self.events.insert(name, RawEvent { version, ..ev });
                }
            }
        }
        if file_version.is_some() {
            self.version = file_version;
        }
        self.user_attributes.extend(file.user_attributes);
    }
}

fn compile_prop(name: &str, raw: &RawProp) -> Result<Prop, CatalogError> {
    let ty = match raw.ty.as_str() {
        "string" => PropType::String,
        "number" => PropType::Number,
        "integer" => PropType::Integer,
        "boolean" => PropType::Boolean,
        "array" => PropType::Array,
        "object" => PropType::Object,
        other => {
            return Err(CatalogError::UnknownType {
                path: name.to_string(),
                found: other.to_string(),
            })
        }
    };
    let format = match raw.format.as_deref() {
        None => None,
        Some(f) => Some(parse_format(f).ok_or_else(|| CatalogError::UnknownFormat {
            path: name.to_string(),
            found: f.to_string(),
        })?),
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
    let pattern = match &raw.pattern {
        Some(p) => Some(compile_pattern(p).map_err(|e| CatalogError::BadPattern {
            path: name.to_string(),
            message: e.to_string(),
        })?),
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
        pattern,
    })
}

/// The `format` names a catalog may use.
pub(crate) fn parse_format(f: &str) -> Option<Format> {
    Some(match f {
        "uuid" => Format::Uuid,
        "guid" => Format::Guid,
        "email" => Format::Email,
        "date-time" => Format::DateTime,
        "uri" => Format::Uri,
        _ => return None,
    })
}

/// The `type` names a catalog may use.
pub(crate) const TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "array", "object"];

fn compile_map(raw: &Option<BTreeMap<String, RawProp>>) -> Result<NameMap<Prop>, CatalogError> {
    raw.iter()
        .flatten()
        .map(|(k, v)| compile_prop(k, v).map(|p| (k.clone(), p)))
        .collect()
}

impl Catalog {
    /// Compiles a catalog from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        Self::compile(RawCatalog::parse(text)?)
    }

    pub(crate) fn compile(raw: RawCatalog) -> Result<Self, CatalogError> {
        let identify_names: Vec<String> = raw
            .identify
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = NameMap::default();
        for (name, ev) in &raw.events {
            events.insert(
                name.clone(),
                EventSchema {
                    name: name.clone(),
                    properties: compile_event_props(ev).map_err(|e| {
                        e.under(&format!("{}.events.{name}.properties", raw.catalog))
                    })?,
                    extra_keys: ev.extra_keys.as_deref().is_some_and(|k| k != "none"),
                    requires_data_capture: ev
                        .extra_keys
                        .as_deref()
                        .is_some_and(|k| k.contains("data_capture")),
                    identify_unclaimed: identify_names
                        .iter()
                        .filter(|n| !ev.properties.contains_key(*n))
                        .cloned()
                        .collect(),
                    deprecated: ev.deprecated.unwrap_or(false),
                    version: ev.version.as_deref().map(Arc::from),
                },
            );
        }
        let user_attributes =
            UserAttributes::new(&raw.user_attributes).map_err(|e| CatalogError::BadPattern {
                path: format!("{}.user_attributes", raw.catalog),
                message: e.to_string(),
            })?;
        Ok(Self {
            common: compile_map(&raw.common)
                .map_err(|e| e.under(&format!("{}.common", raw.catalog)))?,
            identify: compile_map(&raw.identify)
                .map_err(|e| e.under(&format!("{}.identify", raw.catalog)))?,
            identify_names,
            version: raw.version.as_deref().map(Arc::from),
            user_attributes,
            name: raw.catalog,
            events,
        })
    }
}

fn compile_event_props(ev: &RawEvent) -> Result<NameMap<Prop>, CatalogError> {
    ev.properties
        .iter()
        .map(|(k, v)| compile_prop(k, v).map(|p| (k.clone(), p)))
        .collect()
}
