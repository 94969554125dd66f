//! The event catalogs (`catalog/komo.json`, `catalog/acemate.json`) compiled into validators.
//!
//! The catalogs are data generated from `../shared/specs/` by `scripts/gen_catalog.py` and
//! embedded at build time; [`Catalogs::builtin`] compiles them once at start-up. Each property
//! rule (type, required, nullable, enum, format) becomes a [`Prop`] checked without allocation
//! on the happy path.

use crate::envelope::Source;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast, non-cryptographic string hasher (the Fx hash of rustc) for the catalogs'
/// fixed lookup tables: they are built once from trusted data and only probed with input
/// names, so flooding is not a concern, and SipHash would dominate the per-property cost.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Hasher state for the catalog tables.
pub type FxBuild = BuildHasherDefault<FxHasher>;
/// A catalog table keyed by name.
pub type NameMap<V> = HashMap<String, V, FxBuild>;

const KOMO_JSON: &str = include_str!("../../catalog/komo.json");
const ACEMATE_JSON: &str = include_str!("../../catalog/acemate.json");

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
    /// acemate's uuid: 8-4-4-4-12 hex with a version digit of 1-8.
    Uuid,
    /// Komo's GUID: any 8-4-4-4-12 hex (the spec sets no version).
    Guid,
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
    pub enum_values: Option<HashSet<String, FxBuild>>,
    pub items: Option<Box<Prop>>,
}

/// One catalog event.
#[derive(Debug)]
pub struct EventSchema {
    pub name: String,
    pub properties: NameMap<Prop>,
    /// Komo: the spec says user attributes / data-capture fields ride along as extra keys.
    pub extra_keys: bool,
    /// Komo: the spec marks "Data capture fields" not optional (SignUpSuccess): at least one
    /// extra key must come with the event.
    pub requires_data_capture: bool,
    /// acemate: the Identify names (sorted) this event does not define as its own properties.
    pub identify_unclaimed: Vec<String>,
}

/// One compiled catalog.
#[derive(Debug)]
pub struct Catalog {
    pub name: String,
    /// Fields every event of this catalog has (Komo's id, site_id, ...).
    pub common: NameMap<Prop>,
    /// acemate's Identify property set.
    pub identify: NameMap<Prop>,
    /// The Identify names, sorted.
    pub identify_names: Vec<String>,
    pub events: NameMap<EventSchema>,
}

/// Both catalogs.
#[derive(Debug)]
pub struct Catalogs {
    pub komo: Catalog,
    pub acemate: Catalog,
}

/// A catalog that cannot be compiled, with the JSON path of the problem.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: unknown type {found:?}")]
    UnknownType { path: String, found: String },
    #[error("{path}: unknown format {found:?}")]
    UnknownFormat { path: String, found: String },
}

impl CatalogError {
    /// The same problem, its path under `prefix` (e.g. `komo.events.CardViewed`).
    fn under(self, prefix: &str) -> Self {
        match self {
            CatalogError::UnknownType { path, found } => CatalogError::UnknownType {
                path: format!("{prefix}.{path}"),
                found,
            },
            CatalogError::UnknownFormat { path, found } => CatalogError::UnknownFormat {
                path: format!("{prefix}.{path}"),
                found,
            },
            json => json,
        }
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
        Some("uuid") => Some(Format::Uuid),
        Some("guid") => Some(Format::Guid),
        Some("email") => Some(Format::Email),
        Some("date-time") => Some(Format::DateTime),
        Some("uri") => Some(Format::Uri),
        Some(other) => {
            return Err(CatalogError::UnknownFormat {
                path: name.to_string(),
                found: other.to_string(),
            })
        }
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

fn compile_map(raw: &BTreeMap<String, RawProp>) -> Result<NameMap<Prop>, CatalogError> {
    raw.iter()
        .map(|(k, v)| compile_prop(k, v).map(|p| (k.clone(), p)))
        .collect()
}

impl Catalog {
    /// Compiles a catalog from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text)?;
        let identify_names: Vec<String> = raw.identify.keys().cloned().collect();
        let mut events = NameMap::default();
        for (name, ev) in &raw.events {
            events.insert(
                name.clone(),
                EventSchema {
                    name: name.clone(),
                    properties: compile_map(&ev.properties).map_err(|e| {
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
                },
            );
        }
        Ok(Self {
            common: compile_map(&raw.common)
                .map_err(|e| e.under(&format!("{}.common", raw.catalog)))?,
            identify: compile_map(&raw.identify)
                .map_err(|e| e.under(&format!("{}.identify", raw.catalog)))?,
            identify_names,
            name: raw.catalog,
            events,
        })
    }
}

impl Catalogs {
    /// The catalogs shipped in the binary.
    pub fn builtin() -> Result<Self, CatalogError> {
        Ok(Self {
            komo: Catalog::from_json(KOMO_JSON)?,
            acemate: Catalog::from_json(ACEMATE_JSON)?,
        })
    }

    /// The catalog of `source`.
    pub fn of(&self, source: Source) -> &Catalog {
        match source {
            Source::Komo => &self.komo,
            Source::Acemate => &self.acemate,
        }
    }

    /// Whether `event` is a catalog name of `source` (acemate's `$identify` included).
    pub fn knows(&self, source: Source, event: &str) -> bool {
        self.of(source).events.contains_key(event)
            || (source == Source::Acemate && event == "$identify")
    }
}

mod check;
pub mod describe;
pub mod rule;
pub use check::{check_props, PropPath};

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
        assert!(c.knows(Source::Acemate, "$identify"));
        assert!(!c.knows(Source::Komo, "$identify"));
    }

    #[test]
    fn a_bad_property_type_is_named_with_its_path() {
        let text = r#"{"catalog": "komo", "common": {}, "identify": {}, "events": {
            "PrizeAwarded": {"properties": {"prize": {"type": "text"}}}}}"#;
        let err = Catalog::from_json(text).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"komo.events.PrizeAwarded.properties.prize: unknown type "text""#
        );
    }
}
