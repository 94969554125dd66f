//! `event-relay route`: raw events on stdin, through the normalizer and the router, to what each
//! target would be sent. The URL, headers and body come from the targets' own request building
//! (`deliver::Service::preview`), so the dry run cannot drift from what the relay sends.

use super::dry_run::DryRun;
use super::{load_or_exit, stdin_lines};
use std::path::PathBuf;
use std::process::ExitCode;

/// `route`: prints one JSON line per event: matched routes, targets and what each would be sent.
pub fn route(config: PathBuf, topic: Option<String>) -> ExitCode {
    let cfg = match load_or_exit(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dry = match DryRun::new(&cfg, topic.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let mut rejected = false;
    for (n, text) in stdin_lines() {
        rejected |= !line(&dry, n, &text);
    }
    if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints one JSON line per event of input line `n` (rejections on stderr); `false` if
/// anything in it would be dead-lettered.
fn line(dry: &DryRun, n: usize, line: &[u8]) -> bool {
    let res = match dry.normalize(n, line, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("line {n}: {e} ({}) → dead letter", e.reason());
            return false;
        }
    };
    for r in &res.rejected {
        eprintln!(
            "line {n}: batch event {}: {} ({}) → dead letter",
            r.index,
            r.error,
            r.error.reason()
        );
    }
    for (env, raw) in &res.events {
        let d = dry.router.route(env);
        let routes: Vec<_> = d
            .routes
            .iter()
            .map(|&i| &dry.router.routes[i].name)
            .collect();
        let targets: Vec<_> = d.targets.iter().map(|&i| dry.target(i, env, raw)).collect();
        let line = serde_json::json!({
            "line": n,
            "event": env.event,
            "id": env.id,
            "validation": env.validation.status,
            "routes": routes,
            "default_targets": d.defaulted,
            "unrouted": d.routes.is_empty() && d.targets.is_empty(),
            "targets": targets,
        });
        println!("{}", dry.redact(line.to_string()));
    }
    res.rejected.is_empty()
}
