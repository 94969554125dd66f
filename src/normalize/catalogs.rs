//! The relay's catalogs from its config: the built-in ones with the `[[catalogs]]` files
//! applied ([`Normalizer::from_config`]), and those files' problems as config problems
//! ([`catalog_problems`], what `check`, start-up and a reload report).

use super::Normalizer;
use crate::catalog::{CatalogError, Catalogs};
use crate::config::{Config, Problem};

impl Normalizer {
    /// The built-in catalogs with the config's `[[catalogs]]` files applied over them (each
    /// file checked as [`catalog_problems`] does).
    pub fn from_config(config: &Config) -> Result<Self, CatalogError> {
        let files: Vec<&std::path::Path> =
            config.catalogs.iter().map(|c| c.path.as_path()).collect();
        Ok(Self::new(Catalogs::load(&files)?))
    }
}

/// The problems of the config's `[[catalogs]]` files, each at `catalogs[i].path`, naming the
/// file and the JSON path: what `event-relay check` adds to the config's own checks, and what
/// start-up (and a reload) refuses to run with. Every file is checked.
pub fn catalog_problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, c) in config.catalogs.iter().enumerate() {
        if c.path.as_os_str().is_empty() {
            continue; // reported by `Config::validate`
        }
        let at = format!("catalogs[{i}].path");
        match crate::catalog::check_file(&c.path) {
            Ok(_) => {}
            // One line per problem, each naming the file and its JSON path.
            Err(CatalogError::File { file, problems: ps }) => {
                for p in ps {
                    let message = format!("catalog file {}: {p}", file.display());
                    problems.push(Problem::new(&at, message));
                }
            }
            Err(e) => problems.push(Problem::new(&at, e)),
        }
    }
    problems
}
