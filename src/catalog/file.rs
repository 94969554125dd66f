//! Catalog files (`[[catalogs]] path = "..."`): reading one within bounds and checking it, every
//! problem with its JSON path. [`check_file`] is the one check: the loader
//! ([`super::Catalogs::load`]), `event-relay check` and `event-relay catalog check` all use it.
//!
//! A catalog file is untrusted input: its size, nesting depth, `enum` length, `pattern` length
//! and a pattern's compiled size are bounded, so a hostile file is an error naming the file
//! and the JSON path, never a crash, a stall or an unbounded allocation.

use super::compile::RawCatalog;
use super::{walk, CatalogError};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// Largest catalog file read (a catalog of thousands of events is a few MiB).
pub const MAX_CATALOG_FILE_BYTES: usize = 16 << 20;
/// Deepest JSON nesting a catalog file may have (a property of arrays of arrays of ... is
/// rare past 10 levels).
pub const MAX_CATALOG_DEPTH: usize = 32;
/// Most values one `enum` may list.
pub const MAX_ENUM_VALUES: usize = 10_000;
/// Longest `pattern` (characters).
pub const MAX_PATTERN_LEN: usize = 1_000;
/// Most problems listed for one file (the rest are counted).
pub const MAX_PROBLEMS: usize = 100;

/// One problem of a catalog file: where (`$.events.PrizeAwarded.properties.prize.type`) and
/// what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogProblem {
    /// JSON path from the document root `$`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The problems of a file on one line each (for the error's message).
pub(super) fn render(problems: &[CatalogProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// A checked catalog file, ready to be applied over its catalog.
pub struct CatalogFile {
    pub(super) raw: RawCatalog,
}

impl std::fmt::Debug for CatalogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogFile")
            .field("catalog", &self.raw.catalog)
            .field("version", &self.raw.version)
            .field("events", &self.raw.events.len())
            .finish()
    }
}

impl CatalogFile {
    /// The catalog it extends: `komo` or `acemate`.
    pub fn catalog(&self) -> &str {
        &self.raw.catalog
    }

    /// The `version` it declares, if any.
    pub fn version(&self) -> Option<&str> {
        self.raw.version.as_deref()
    }

    /// The events it adds or changes, sorted.
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.raw.events.keys().map(String::as_str)
    }
}

/// Reads and checks one catalog file as the loader does.
pub fn check_file(path: &Path) -> Result<CatalogFile, CatalogError> {
    let unreadable = |source| CatalogError::Unreadable {
        file: path.to_path_buf(),
        source,
    };
    let invalid = |problems| CatalogError::File {
        file: path.to_path_buf(),
        problems,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CATALOG_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) if e.as_bytes().len() > MAX_CATALOG_FILE_BYTES => {
            return Err(invalid(vec![too_large()]))
        }
        Err(e) => {
            return Err(invalid(vec![CatalogProblem {
                path: "$".into(),
                message: format!("not UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
            }]))
        }
    };
    check_text(&text).map_err(invalid)
}

fn too_large() -> CatalogProblem {
    CatalogProblem {
        path: "$".into(),
        message: format!("file is larger than the limit of {MAX_CATALOG_FILE_BYTES} bytes"),
    }
}

/// Checks catalog file text: every problem with its JSON path, or the file ready to apply.
pub fn check_text(text: &str) -> Result<CatalogFile, Vec<CatalogProblem>> {
    let root = |message: String| {
        vec![CatalogProblem {
            path: "$".into(),
            message,
        }]
    };
    if text.len() > MAX_CATALOG_FILE_BYTES {
        return Err(vec![too_large()]);
    }
    if !crate::json::depth_within(text.as_bytes(), MAX_CATALOG_DEPTH) {
        return Err(root(format!(
            "JSON nesting deeper than {MAX_CATALOG_DEPTH} levels"
        )));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| root(format!("not valid JSON: {e}")))?;
    let mut problems = Vec::new();
    let more = walk::catalog(&value, &mut problems);
    if more > 0 {
        problems.push(CatalogProblem {
            path: "$".into(),
            message: format!("{more} more problems not listed"),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // The walk has checked everything the typed form needs; this cannot fail on its output.
    serde_json::from_value(value)
        .map(|raw| CatalogFile { raw })
        .map_err(|e| root(e.to_string()))
}
