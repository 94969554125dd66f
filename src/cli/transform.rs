//! `event-relay transform`: raw messages on stdin through one target's transform, one JSON line
//! per event: the body it would send and the headers and path its program set, a skip, or the
//! error. The same path as `route` and the running relay (`deliver::dry_run`).

use super::dry_run::{body_json, transform_headers, DryRun};
use super::{load_or_exit, stdin_lines};
use crate::deliver::DryRun as Shown;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// `transform`: exit 0 when every event went through (sent or skipped), 1 when a line was not
/// relayed or the program failed on an event, 2 for an invalid config or an unknown target.
pub fn transform(config: PathBuf, target: String, topic: Option<String>) -> ExitCode {
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
    let Some(index) = dry.target_index(&target) else {
        let names: Vec<_> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        eprintln!(
            "no target named {target:?} (the config has: {})",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let mut failed = false;
    for (n, text) in stdin_lines() {
        failed |= !line(&dry, index, n, &text);
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the outcome of each event of line `n`; `false` if any failed or was not relayed.
fn line(dry: &DryRun, target: usize, n: usize, text: &[u8]) -> bool {
    let normalized = match dry.normalize(n, text, None) {
        Ok(r) => r,
        Err(e) => {
            let error = format!("not relayed: {e} ({}: a dead letter)", e.reason());
            println!("{}", json!({"line": n, "error": error}));
            return false;
        }
    };
    let mut ok = normalized.rejected.is_empty();
    for r in &normalized.rejected {
        let error = format!(
            "not relayed: {} ({}: a dead letter)",
            r.error,
            r.error.reason()
        );
        println!(
            "{}",
            json!({"line": n, "batch_index": r.index, "error": error})
        );
    }
    for (env, raw) in &normalized.events {
        let shown = match dry.shown(target, env, raw) {
            Shown::Request(p, request) => {
                let request = request.unwrap_or_default();
                let headers = transform_headers(&p, &request);
                json!({"body": body_json(&p.body), "headers": headers, "path": request.path})
            }
            Shown::Skipped => json!({"skipped": true}),
            Shown::Failed(e) => {
                ok = false;
                json!({"error": e})
            }
        };
        let mut out = json!({"line": n, "event": env.event, "id": env.id});
        if let (Some(out), Some(shown)) = (out.as_object_mut(), shown.as_object()) {
            out.extend(shown.clone());
        }
        println!("{}", dry.redact(out.to_string()));
    }
    ok
}
