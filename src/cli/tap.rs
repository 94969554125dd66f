//! `event-relay tap`: a running relay's `GET /tap` stream (`server.tap = true`), one line per
//! event passing a stage, printed for a person (colour when stdout is a terminal) or, with
//! `--json`, as the relay sends it.

use crate::tap::Stage;
use bytes::Bytes;
use clap::builder::PossibleValuesParser;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// `tap --help`: the output and the exit status.
pub const TAP_HELP: &str = "\
Output: one line per event passing a stage: time, stage, event name, id, target, outcome (HTTP
status, attempts, error). A line `-- N lines dropped` means this client read slower than events
passed: the relay dropped lines for it rather than slow down. --json prints the relay's NDJSON
lines as they come (envelopes only when the relay runs with log.include_payloads = true).

Exit status: 0 when the stream ends (--limit reached, the relay stopped), 1 the relay cannot be
reached or refuses (e.g. 404: server.tap is off), 2 invalid arguments.";

/// The arguments of `tap`.
#[derive(Args, Debug)]
pub struct TapArgs {
    /// The relay's server (`server.listen`), e.g. http://127.0.0.1:9464.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Only these stages (repeatable or comma separated).
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(Stage::ALL.map(Stage::as_str)))]
    pub stage: Vec<String>,
    /// Only lines about this target (routed, delivered, failed); repeatable: any of them.
    #[arg(long, value_name = "NAME")]
    pub target: Vec<String>,
    /// Only events whose name matches this glob (as in routes: `*`, `?`, a leading `!`
    /// excludes); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub event: Vec<String>,
    /// Stop after this many lines.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print the relay's NDJSON lines as they are.
    #[arg(long)]
    pub json: bool,
}

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
enum TapError {
    #[error("--url {0:?}: {1}")]
    Url(String, String),
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the stream from {url} broke: {source}")]
    Stream { url: String, source: hyper::Error },
}

/// `tap`: 0 when the stream ended, 1 the relay cannot be reached or refused, 2 invalid `--url`.
pub fn tap(args: &TapArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(stream(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("event-relay tap: {e}");
            ExitCode::from(if matches!(e, TapError::Url(..)) { 2 } else { 1 })
        }
    }
}

/// `GET <url>/tap?<filters>`.
fn tap_url(args: &TapArgs) -> Result<url::Url, TapError> {
    let invalid = |why: String| TapError::Url(args.url.clone(), why);
    let mut url = url::Url::parse(&args.url).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" {
        return Err(invalid(
            "the relay's server speaks plain HTTP: use http://HOST:PORT".into(),
        ));
    }
    if !url.path().ends_with("/tap") {
        let path = format!("{}/tap", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !args.stage.is_empty() {
        query.append_pair("stage", &args.stage.join(","));
    }
    for t in &args.target {
        query.append_pair("target", t);
    }
    for e in &args.event {
        query.append_pair("event", e);
    }
    if let Some(n) = args.limit {
        query.append_pair("limit", &n.to_string());
    }
    let query = query.finish();
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    Ok(url)
}

/// Reads the stream and prints it until it ends (or stdout is closed).
async fn stream(args: &TapArgs) -> Result<(), TapError> {
    let url = tap_url(args)?;
    let shown = url.to_string();
    let uri: http::Uri = shown
        .parse()
        .map_err(|e: http::uri::InvalidUri| TapError::Url(args.url.clone(), e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(uri).await.map_err(|source| TapError::Connect {
        url: shown.clone(),
        source,
    })?;
    let status = response.status();
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(TapError::Refused {
            url: shown,
            status: status.as_u16(),
            body: text,
        });
    }
    let colour =
        !args.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| TapError::Stream {
            url: shown.clone(),
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        if !print_lines(&mut pending, args.json, colour) {
            return Ok(()); // stdout closed (e.g. `| head`)
        }
    }
    Ok(())
}

/// Prints the complete lines of `pending` (keeping a partial last one); `false` once stdout
/// is closed.
fn print_lines(pending: &mut Vec<u8>, json: bool, colour: bool) -> bool {
    let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
        return true;
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in pending[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let text = if json {
            String::from_utf8_lossy(line).into_owned()
        } else {
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => human(&v, colour),
                Err(_) => String::from_utf8_lossy(line).into_owned(),
            }
        };
        if writeln!(out, "{text}").is_err() {
            return false;
        }
    }
    pending.drain(..=end);
    out.flush().is_ok()
}

/// One tap line for a person: `HH:MM:SS.mmm  stage  event  id  → target  outcome detail`.
fn human(v: &Value, colour: bool) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("");
    let ts = s("ts");
    let time = ts.get(11..23).unwrap_or(ts);
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    if let Some(n) = v["dropped"].as_u64() {
        let total = v["dropped_total"].as_u64().unwrap_or(n);
        let text = format!(
            "-- {n} lines dropped: this client reads slower than events pass ({total} so far)"
        );
        return format!("{time}  {}", paint("33;1", &text));
    }
    let stage = s("stage");
    let code = match stage {
        "delivered" => "32",
        "failed" => "31",
        "dead_lettered" => "35",
        "routed" => "36",
        _ => "2",
    };
    let mut out = format!(
        "{time}  {}  {}  {}",
        paint(code, &format!("{stage:<13}")),
        or_dash(s("event")),
        or_dash(s("id"))
    );
    if let Some(t) = v["target"].as_str() {
        out.push_str(&format!("  → {t}"));
    }
    if let Some(o) = v["outcome"].as_str() {
        out.push_str(&format!("  {}", paint(code, o)));
    }
    if let Some(status) = v["status"].as_u64() {
        out.push_str(&format!(" {status}"));
    }
    if let Some(n) = v["attempts"].as_u64() {
        out.push_str(&format!(" ({n} attempt{})", if n == 1 { "" } else { "s" }));
    }
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!(": {e}"));
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: TapArgs,
    }

    fn args(argv: &[&str]) -> TapArgs {
        Cmd::try_parse_from(std::iter::once("tap").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .args
    }

    #[test]
    fn tap_url_carries_the_filters() {
        let a = args(&[
            "--url",
            "http://relay:9464/",
            "--stage",
            "delivered,failed",
            "--stage",
            "dead_lettered",
            "--target",
            "crm",
            "--event",
            "Card*",
            "--limit",
            "5",
        ]);
        assert_eq!(
            tap_url(&a).unwrap().as_str(),
            "http://relay:9464/tap?stage=delivered%2Cfailed%2Cdead_lettered&target=crm&event=Card*&limit=5"
        );
        let plain = args(&["--url", "http://127.0.0.1:9464/tap"]);
        assert_eq!(
            tap_url(&plain).unwrap().as_str(),
            "http://127.0.0.1:9464/tap"
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Cmd::try_parse_from(["tap", "--stage", "sent"]).is_err());
        assert!(Cmd::try_parse_from(["tap", "--limit", "0"]).is_err());
        let https = args(&["--url", "https://relay:9464"]);
        assert!(matches!(tap_url(&https), Err(TapError::Url(..))));
    }

    #[test]
    fn a_line_for_a_person() {
        let line = json!({"ts": "2026-01-02T03:04:05.678Z", "stage": "failed", "id": "e-1",
            "event": "CardViewed", "source": "komo", "target": "crm", "outcome": "WebhookError",
            "status": 400, "attempts": 1, "error": "HTTP 400"});
        assert_eq!(
            human(&line, false),
            "03:04:05.678  failed         CardViewed  e-1  → crm  WebhookError 400 (1 attempt): HTTP 400"
        );
        let coloured = human(&line, true);
        assert!(coloured.contains("\x1b[31m"), "{coloured:?}");
        let consumed = json!({"ts": "2026-01-02T03:04:05.678Z", "stage": "consumed", "id": null,
            "event": null, "source": "komo", "target": null, "outcome": null});
        assert_eq!(human(&consumed, false), "03:04:05.678  consumed       -  -");
        let dropped = json!({"ts": "2026-01-02T03:04:05.678Z", "dropped": 3, "dropped_total": 7});
        assert!(
            human(&dropped, false).contains("-- 3 lines dropped"),
            "{}",
            human(&dropped, false)
        );
    }
}
