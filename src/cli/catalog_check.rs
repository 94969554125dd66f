//! `event-relay catalog check FILE`: checks a catalog file exactly as the relay loads it
//! (`catalog::check_file`), printing every problem with its JSON path.
//!
//! Exit status: 0 valid, 1 problems, 2 unreadable.

use crate::catalog::{check_file, CatalogError};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `event-relay catalog ...` subcommands.
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Check a catalog file as `[[catalogs]]` would load it; prints every problem with its JSON
    /// path (exit 0 valid, 1 problems, 2 unreadable).
    Check {
        /// The JSON catalog file (format: docs/catalog.md).
        file: PathBuf,
    },
}

/// Runs a `catalog` subcommand.
pub fn catalog(cmd: CatalogCommand) -> ExitCode {
    match cmd {
        CatalogCommand::Check { file } => check(&file),
    }
}

fn check(file: &Path) -> ExitCode {
    match check_file(file) {
        Ok(c) => {
            let events = c.event_names().count();
            let version = c
                .version()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default();
            println!(
                "{}: OK ({} catalog{version}, {events} event(s))",
                file.display(),
                c.catalog()
            );
            ExitCode::SUCCESS
        }
        Err(CatalogError::File { problems, .. }) => {
            eprintln!("{}: {} problem(s)", file.display(), problems.len());
            for p in &problems {
                println!("{}: {p}", file.display());
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
