//! The event catalogs (`catalog/komo.json`, `catalog/acemate.json`) compiled into validators.
//!
//! The catalogs are data generated from `../shared/specs/` by `scripts/gen_catalog.py` and
//! embedded at build time; [`Catalogs::builtin`] compiles them once at start-up. Catalog files
//! named in the config (`[[catalogs]]`, format in `docs/catalog.md`) extend or override them:
//! [`Catalogs::load`] checks each file ([`check_file`], also behind `event-relay catalog
//! check`), merges them over the built-in ones in order and compiles the result. Each property
//! rule (type, required, nullable, enum, format, pattern) becomes a [`Prop`] checked without
//! allocation on the happy path.

use crate::envelope::Source;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod check;
mod compile;
mod file;
mod walk;

pub use crate::envelope::{AttributePatternError, UserAttributes};
pub(crate) use check::{canonical_instant, is_canonical_utc_millis};
pub use check::{check_props, check_props_ref, PropPath};
pub use file::{
    check_file, check_text, CatalogFile, CatalogProblem, MAX_CATALOG_DEPTH, MAX_CATALOG_FILE_BYTES,
    MAX_ENUM_VALUES, MAX_PATTERN_LEN,
};

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
    /// A regular expression a string value must match (anywhere; anchor it with `^...$`).
    pub pattern: Option<regex::Regex>,
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
    /// Declared deprecated by a catalog file: still judged and forwarded, with the problem
    /// `event: deprecated ...` listed.
    pub deprecated: bool,
    /// The version of the catalog entry that defined or last changed this event.
    pub version: Option<Arc<str>>,
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
    /// The version of the last catalog file loaded for this catalog (the built-in ones have
    /// none): named in `validation.catalog_version` of events the catalog does not know.
    pub version: Option<Arc<str>>,
    /// User attributes declared by catalog files: for events the catalog does not know,
    /// these keys go to `user.traits` (see `docs/envelope.md`).
    pub user_attributes: UserAttributes,
}

/// Both catalogs.
#[derive(Debug)]
pub struct Catalogs {
    pub komo: Catalog,
    pub acemate: Catalog,
    /// Per (catalog, event) added or changed by a loaded file: the last such file (what
    /// `catalog list` and `show` name as the event's source; the others are built in).
    pub origins: HashMap<(Source, String), PathBuf>,
}

/// A catalog that cannot be compiled or loaded, with the file and JSON path of the problem.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A catalog file that cannot be read (missing, a directory, permissions).
    #[error("catalog file {}: cannot read: {source}", file.display())]
    Unreadable {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A catalog file with problems, each with its JSON path (`$.events.X.properties.y`).
    #[error("catalog file {}: {}", file.display(), file::render(problems))]
    File {
        file: PathBuf,
        problems: Vec<CatalogProblem>,
    },
    #[error("{path}: unknown type {found:?}")]
    UnknownType { path: String, found: String },
    #[error("{path}: unknown format {found:?}")]
    UnknownFormat { path: String, found: String },
    #[error("{path}: {message}")]
    BadPattern { path: String, message: String },
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
            CatalogError::BadPattern { path, message } => CatalogError::BadPattern {
                path: format!("{prefix}.{path}"),
                message,
            },
            json => json,
        }
    }
}

impl Catalogs {
    /// The catalogs shipped in the binary.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::load(&[] as &[PathBuf])
    }

    /// The built-in catalogs with the catalog `files` applied over them in order (a later
    /// file wins over an earlier one). Each file is checked as [`check_file`] does; the first
    /// file with problems is the error, naming the file and every problem's JSON path.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<Self, CatalogError> {
        let checked = files
            .iter()
            .map(|p| check_file(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut origins = HashMap::new();
        for (file, path) in checked.iter().zip(files) {
            let source = match file.catalog() {
                "komo" => Source::Komo,
                _ => Source::Acemate,
            };
            for event in file.event_names() {
                origins.insert((source, event.to_string()), path.as_ref().to_path_buf());
            }
        }
        let mut catalogs = Self::with_files(checked)?;
        catalogs.origins = origins;
        Ok(catalogs)
    }

    /// The built-in catalogs with already checked catalog files applied over them in order.
    pub fn with_files(files: impl IntoIterator<Item = CatalogFile>) -> Result<Self, CatalogError> {
        let mut komo = compile::RawCatalog::parse(KOMO_JSON)?;
        let mut acemate = compile::RawCatalog::parse(ACEMATE_JSON)?;
        for file in files {
            match file.catalog() {
                "komo" => komo.apply(file.raw),
                _ => acemate.apply(file.raw),
            }
        }
        Ok(Self {
            komo: Catalog::compile(komo)?,
            acemate: Catalog::compile(acemate)?,
            origins: HashMap::new(),
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

pub mod describe;
pub mod rule;

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod proptests;
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
