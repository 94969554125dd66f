//! `event-relay catalog check FILE`: checks a catalog file exactly as the relay loads it
//! (`catalog::check_file`), printing every problem with its JSON path.
//!
//! Exit status: 0 valid, 1 problems, 2 unreadable.

use crate::catalog::{check_file, CatalogError};
use std::path::Path;
use std::process::ExitCode;

/// `catalog check FILE`: 0 valid, 1 problems, 2 unreadable.
pub(super) fn check(file: &Path) -> ExitCode {
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
