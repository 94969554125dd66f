//! `event-relay catalog list | show | infer`: the catalogs the relay validates with, one event's
//! rules, and draft entries for the events of a captured sample the catalogs do not know.

use crate::catalog::describe::{event_origin, format_name, in_order, sorted};
use crate::catalog::{Catalog, Catalogs, Prop};
use crate::config::SourceFormat;
use crate::envelope::Source;
use crate::normalize::infer::Inferrer;
use crate::normalize::Normalizer;
use clap::{Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that stops quietly when stdout is closed (`catalog list | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `catalog --help`: the workflow for a new event.
pub const CATALOG_HELP: &str = "\
Adding an event the catalogs do not know: capture a sample of the source topic (one message per
line), `event-relay catalog infer --source komo < sample.jsonl > draft.json`, review the draft
(types, required, user_attributes), then load it as a catalog file.";

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Events per catalog (komo, acemate), where each is defined, and counts.
    List {
        /// A config whose catalogs are listed (default: the built-in catalogs).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// One event's rules: properties, types, required, nullable, enums, formats, and the
    /// catalog's common and Identify parts that apply to it.
    Show {
        /// The event name (e.g. CardViewed).
        event: String,
        /// Only this catalog (default: every catalog that defines the event).
        #[arg(long, value_enum)]
        catalog: Option<CatalogArg>,
        /// A config whose catalogs apply (default: the built-in catalogs).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a catalog file as `[[catalogs]]` would load it; prints every problem with its JSON
    /// path (exit 0 valid, 1 problems, 2 unreadable).
    Check {
        /// The JSON catalog file (format: docs/catalog.md).
        file: PathBuf,
    },
    /// Draft catalog entries (JSON, the catalog file format) for the events of a sample on
    /// stdin (one raw message per line) that the catalog does not know; keys found in every
    /// unknown event type are drafted as `user_attributes`. Exit 1 if none is unknown.
    Infer {
        /// How to read the sample (default: detect per line; a sample must hold one source).
        #[arg(long, value_enum)]
        source: Option<CatalogArg>,
        /// A config whose catalogs apply (default: the built-in catalogs).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// A catalog on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CatalogArg {
    Komo,
    Acemate,
}

impl From<CatalogArg> for Source {
    fn from(c: CatalogArg) -> Self {
        match c {
            CatalogArg::Komo => Source::Komo,
            CatalogArg::Acemate => Source::Acemate,
        }
    }
}

/// Runs a `catalog` subcommand.
pub fn catalog(cmd: CatalogCommand) -> ExitCode {
    if let CatalogCommand::Check { file } = &cmd {
        return super::catalog_check::check(file);
    }
    let config = match &cmd {
        CatalogCommand::List { config }
        | CatalogCommand::Show { config, .. }
        | CatalogCommand::Infer { config, .. } => config.clone(),
        CatalogCommand::Check { .. } => None,
    };
    let catalogs = match load_catalogs(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        CatalogCommand::List { .. } => list(&catalogs),
        CatalogCommand::Show { event, catalog, .. } => {
            show(&catalogs, &event, catalog, config.is_some())
        }
        CatalogCommand::Infer { source, .. } => infer(catalogs, source),
        CatalogCommand::Check { file } => super::catalog_check::check(&file),
    }
}

/// The catalogs a command works with: the config's when one is given (validated as `check`
/// does), else the built-in ones.
fn load_catalogs(config: Option<&Path>) -> Result<Catalogs, ExitCode> {
    let files: Vec<std::path::PathBuf> = match config {
        Some(path) => super::load_or_exit(path)?
            .catalogs
            .iter()
            .map(|c| c.path.clone())
            .collect(),
        None => Vec::new(),
    };
    Catalogs::load(&files).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn list(catalogs: &Catalogs) -> ExitCode {
    for (source, catalog) in in_order(catalogs) {
        let mut names: Vec<&String> = catalog.events.keys().collect();
        names.sort();
        let origins: Vec<_> = names
            .iter()
            .map(|n| event_origin(catalogs, source, n))
            .collect();
        let mut per_origin: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &origins {
            *per_origin.entry(o).or_default() += 1;
        }
        let from: Vec<String> = per_origin
            .iter()
            .map(|(o, n)| format!("{o}: {n}"))
            .collect();
        say!(
            "{}: {} events ({}), {} common properties, {} identify properties",
            catalog.name,
            names.len(),
            from.join(", "),
            catalog.common.len(),
            catalog.identify.len()
        );
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        for (name, origin) in names.iter().zip(&origins) {
            let ev = &catalog.events[name.as_str()];
            let required = ev.properties.values().filter(|p| p.required).count();
            say!(
                "  {name:<width$}  {:>3} properties  {required:>3} required  {origin}",
                ev.properties.len()
            );
        }
    }
    ExitCode::SUCCESS
}

fn show(catalogs: &Catalogs, event: &str, only: Option<CatalogArg>, with_config: bool) -> ExitCode {
    let mut found = false;
    for (source, catalog) in in_order(catalogs) {
        if only.is_some_and(|c| Source::from(c) != source) {
            continue;
        }
        let Some(ev) = catalog.events.get(event) else {
            continue;
        };
        found = true;
        say!(
            "{event} ({} catalog, {})",
            catalog.name,
            event_origin(catalogs, source, event)
        );
        if ev.extra_keys {
            say!(
                "extra keys: user attributes (keys that are not its properties go to user.traits)"
            );
        }
        if ev.requires_data_capture {
            say!("data capture fields: required (at least one extra key)");
        }
        table("properties", &sorted(&ev.properties));
        common_parts(catalog, &ev.identify_unclaimed);
    }
    let acemate = only.is_none_or(|c| Source::from(c) == Source::Acemate);
    if !found && acemate && catalogs.knows(Source::Acemate, event) {
        // `$identify` (PostHog's identify call): judged by the Identify set alone.
        found = true;
        let origin = event_origin(catalogs, Source::Acemate, event);
        say!("{event} (acemate catalog, {origin}): the Identify properties, in user.traits");
        table("identify", &sorted(&catalogs.acemate.identify));
    }
    if found {
        return ExitCode::SUCCESS;
    }
    let elsewhere: Vec<&str> = in_order(catalogs)
        .into_iter()
        .filter(|(s, c)| {
            only.is_some_and(|o| Source::from(o) != *s) && c.events.contains_key(event)
        })
        .map(|(_, c)| c.name.as_str())
        .collect();
    if let (Some(o), Some(other)) = (only, elsewhere.first()) {
        eprintln!(
            "event {event:?} is not in the {} catalog; it is in the {other} catalog (leave out --catalog, or use --catalog {other})",
            Source::from(o).as_str()
        );
        return ExitCode::from(1);
    }
    let files = if with_config {
        ""
    } else {
        " (the built-in catalogs only: pass --config PATH for the events of its [[catalogs]] files)"
    };
    eprintln!(
        "event {event:?} is in no catalog{}{files}",
        suggestion(catalogs, event)
    );
    ExitCode::from(1)
}

/// The catalog parts every event of `catalog` gets besides its own properties.
fn common_parts(catalog: &Catalog, identify_unclaimed: &[String]) {
    if !catalog.common.is_empty() {
        let title = format!("common (every {} event, top-level keys)", catalog.name);
        table(&title, &sorted(&catalog.common));
    }
    if !catalog.identify.is_empty() {
        let props: Vec<&Prop> = sorted(&catalog.identify)
            .into_iter()
            .filter(|p| identify_unclaimed.contains(&p.name))
            .collect();
        let title = format!("identify (every {} event, in user.traits)", catalog.name);
        table(&title, &props);
    }
}

/// ` (did you mean "CardViewed"?)` for a name that differs only in case.
fn suggestion(catalogs: &Catalogs, event: &str) -> String {
    in_order(catalogs)
        .iter()
        .flat_map(|(_, c)| c.events.keys())
        .find(|n| n.eq_ignore_ascii_case(event) && n.as_str() != event)
        .map(|n| format!(" (did you mean {n:?}?)"))
        .unwrap_or_default()
}

/// `string`, `array<integer>`, ...
fn type_text(p: &Prop) -> String {
    let ty = format!("{:?}", p.ty).to_lowercase();
    match &p.items {
        Some(item) => format!("{ty}<{}>", type_text(item)),
        None => ty,
    }
}

fn table(title: &str, props: &[&Prop]) {
    say!("{title}:");
    if props.is_empty() {
        say!("  (none)");
        return;
    }
    let rows: Vec<[String; 6]> = props
        .iter()
        .map(|p| {
            let mut allowed: Vec<&String> = p.enum_values.iter().flatten().collect();
            allowed.sort();
            let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            [
                p.name.clone(),
                type_text(p),
                yes_no(p.required),
                yes_no(p.nullable),
                p.format.map_or("-", format_name).to_string(),
                if allowed.is_empty() {
                    "-".into()
                } else {
                    allowed.join(", ")
                },
            ]
        })
        .collect();
    let head = ["NAME", "TYPE", "REQUIRED", "NULLABLE", "FORMAT", "ENUM"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .chain([&head])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&head].into_iter().chain(&rows) {
        let cells: Vec<String> = (0..5)
            .map(|i| format!("{:<w$}", row[i], w = widths[i]))
            .collect();
        say!("  {}  {}", cells.join("  "), row[5]);
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn infer(catalogs: Catalogs, source: Option<CatalogArg>) -> ExitCode {
    let normalizer = Normalizer::new(catalogs);
    let format = match source {
        Some(CatalogArg::Komo) => SourceFormat::Komo,
        Some(CatalogArg::Acemate) => SourceFormat::Acemate,
        None => SourceFormat::Auto,
    };
    let mut inferrer = Inferrer::new(&normalizer, format);
    for (_, line) in super::stdin_lines() {
        inferrer.add_line(&line);
    }
    let seen = inferrer.sources_seen();
    let s = inferrer.stats;
    eprintln!(
        "read {} lines: {} unknown events, {} known, {} rejected",
        s.lines, s.unknown, s.known, s.rejected
    );
    let target = match (source, seen.as_slice()) {
        (Some(c), _) => Source::from(c),
        (None, [one]) => *one,
        (None, []) => Source::Komo,
        (None, _) => {
            eprintln!("the sample holds unknown events of several sources: run once per source with --source");
            return ExitCode::from(2);
        }
    };
    let draft = inferrer.draft(target);
    if draft.events.is_empty() {
        eprintln!(
            "no event of the sample is unknown to the {} catalog: nothing to draft",
            target.as_str()
        );
        return ExitCode::from(1);
    }
    for w in &draft.warnings {
        eprintln!("review: {w}");
    }
    say!(
        "{}",
        serde_json::to_string_pretty(&draft).expect("a draft serializes")
    );
    ExitCode::SUCCESS
}
