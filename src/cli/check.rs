//! `event-relay check`, and the loading every config-reading command shares: every problem
//! at once (the config's keys, its catalog files, its programs), then the declared tests.

use crate::config::{self, Config};
use std::process::ExitCode;

/// `check`: 0 valid (and every declared test passed), 1 a declared test failed, 2 invalid.
pub fn check(path: &std::path::Path) -> ExitCode {
    match load_checked(path) {
        Ok(c) => {
            let tests = match super::test::run(&c) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e:#}", path.display());
                    return ExitCode::from(2);
                }
            };
            if !tests.failed.is_empty() {
                tests.print();
                eprintln!("{}: valid, but a declared test failed", path.display());
                return ExitCode::from(1);
            }
            println!(
                "{}: OK ({} sources, {} targets, {} routes, {} tests passed)",
                path.display(),
                c.sources.len(),
                c.targets.len(),
                c.routes.len(),
                tests.passed.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {} problem(s)", path.display(), e.problems.len());
            for p in &e.problems {
                println!("{p}");
            }
            ExitCode::from(2)
        }
    }
}

/// The config file loaded and validated, its `[[catalogs]]` files checked and its programs
/// compiled.
/// Every problem at once: a program is compiled even when another key has a problem.
pub(super) fn load_checked(path: &std::path::Path) -> Result<Config, config::ConfigError> {
    let (cfg, mut problems) = config::load_partial(path);
    let Some(cfg) = cfg else {
        return Err(config::ConfigError { problems });
    };
    if problems.is_empty() {
        problems.extend(crate::normalize::catalog_problems(&cfg));
    }
    problems.extend(crate::transform::problems(&cfg));
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(config::ConfigError { problems })
    }
}

pub(super) fn load_or_exit(path: &std::path::Path) -> Result<Config, ExitCode> {
    load_checked(path).map_err(|e| {
        for p in &e.problems {
            eprintln!("{}: {p}", path.display());
        }
        ExitCode::from(2)
    })
}
