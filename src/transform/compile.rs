//! Compiling a target's program: VRL's compiler with the relay's function set, its read-only
//! context paths and its metadata rules, every diagnostic rendered with line and column.

use super::request::{check_header_name, METADATA_KEYS};
use super::Transform;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;
use vrl::compiler::state::ExternalEnv;
use vrl::compiler::{CompileConfig, Function};
use vrl::path::{OwnedSegment, OwnedTargetPath, PathPrefix};
use vrl::value::kind::Collection;
use vrl::value::{Kind, Value};

/// VRL's standard library as this build has it: no env, system or network functions (the
/// crate's features leave them out, so calling one is "call to undefined function"), and
/// without [`LEFT_OUT`].
static FUNCTIONS: LazyLock<Vec<Box<dyn Function>>> = LazyLock::new(|| {
    vrl::stdlib::all()
        .into_iter()
        .filter(|f| !LEFT_OUT.contains(&f.identifier()))
        .collect()
});

/// Functions whose result's nesting depth, or allocation, follows the event's data, not the
/// program: an event could make them build a value deep enough to overflow the stack (found by
/// the fuzz target: thousands of levels of `<a>`, `{"a"=>`, or dotted keys), or ask for
/// gigabytes (`decode_lz4`'s size prefix). Calling one is "call to undefined function".
pub const LEFT_OUT: [&str; 5] = [
    "parse_xml",
    "parse_ruby_hash",
    "unflatten",
    "set",
    "decode_lz4",
];

/// The deepest nesting of brackets, and the longest path, a program may have: VRL's type
/// checker compares whole types on each function call, and its time grows steeply with their
/// depth (the fuzz target: a 64-level literal before one call took 10 s to compile, four
/// calls over a minute). 32 levels compile in milliseconds; real programs use a handful.
pub const MAX_NESTING: usize = 32;

/// The metadata the program may only read.
const READ_ONLY: [&str; 6] = ["source", "topic", "partition", "offset", "target", "vars"];

/// What a program is compiled for, besides its text.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    /// The target's name (`%target`).
    pub target: &'a str,
    /// A PostHog target (its output must stay a PostHog event; no `%path`).
    pub posthog: bool,
    /// `transform_vars` (`%vars`).
    pub vars: &'a BTreeMap<String, String>,
    /// `batch_max_bytes`.
    pub max_bytes: usize,
}

/// Why a program does not compile: every diagnostic, each rendered on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", diagnostics.join("\n"))]
pub struct CompileError {
    /// One rendered diagnostic per problem (`error[E103]: ...` with `┌─ file:LINE:COL`, the
    /// source excerpt and what to do), or a metadata rule the program breaks.
    pub diagnostics: Vec<String>,
}

/// Compiles `text` (read from `file`, when it came from one) for a target.
pub fn compile(text: &str, file: Option<&Path>, spec: &Spec) -> Result<Transform, CompileError> {
    if let Some(problem) = too_deep(text) {
        return Err(CompileError {
            diagnostics: vec![problem],
        });
    }
    let external = ExternalEnv::new_with_kind(Kind::any_object(), metadata_kind(spec.vars));
    let mut config = CompileConfig::default();
    for key in READ_ONLY {
        config.set_read_only_path(OwnedTargetPath::metadata(vrl::owned_value_path!(key)), true);
    }
    let compiled = vrl::compiler::compile_with_external(text, &FUNCTIONS, &external, config)
        .map_err(|diagnostics| CompileError {
            diagnostics: diagnostics
                .into_iter()
                .filter(|d| d.severity.is_error())
                .map(|d| render(text, file, d))
                .collect(),
        })?;
    let program = compiled.program;
    let info = program.info();
    let broken: Vec<String> = info
        .target_assignments
        .iter()
        .filter_map(|path| metadata_rule(path, spec.posthog))
        .chain(
            info.target_queries
                .iter()
                .filter_map(|p| unknown_var(p, spec.vars)),
        )
        .collect();
    if !broken.is_empty() {
        return Err(CompileError {
            diagnostics: broken,
        });
    }
    Ok(Transform {
        program,
        source: text.to_string(),
        target: spec.target.to_string(),
        vars: Value::Object(
            spec.vars
                .iter()
                .map(|(k, v)| (k.as_str().into(), Value::from(v.as_str())))
                .collect(),
        ),
        posthog: spec.posthog,
        max_bytes: spec.max_bytes,
    })
}

/// Why `text` nests deeper than [`MAX_NESTING`] (brackets, or segments of one path), with the
/// line and column where it does; string literals and comments are skipped.
fn too_deep(text: &str) -> Option<String> {
    let (mut depth, mut segments) = (0usize, 0usize);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' | '\'' => skip_string(&mut chars, c),
            '#' => while chars.next_if(|(_, c)| *c != '\n').is_some() {},
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '.' => segments += 1,
            c if c.is_alphanumeric() || c == '_' || c == '%' => {}
            _ => segments = 0,
        }
        if depth > MAX_NESTING || segments > MAX_NESTING {
            let (line, column) = super::run::line_col(text, at);
            return Some(format!(
                "the program nests more than {MAX_NESTING} levels deep (brackets or path \
                 segments) at line {line}, column {column}; VRL's type checking of such \
                 programs can take minutes: flatten it"
            ));
        }
    }
    None
}

/// Moves `chars` past a string literal opened by `quote` (escapes honoured).
fn skip_string(chars: &mut std::iter::Peekable<std::str::CharIndices>, quote: char) {
    while let Some((_, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c == quote => return,
            _ => {}
        }
    }
}

/// The metadata's types as the program sees them: the context typed (so `upcase(%source)`
/// needs no error handling), `%vars` with exactly its configured keys, anything else unknown.
fn metadata_kind(vars: &BTreeMap<String, String>) -> Kind {
    let vars: BTreeMap<_, _> = vars
        .keys()
        .map(|k| (k.as_str().into(), Kind::bytes()))
        .collect();
    let fields: BTreeMap<_, _> = [
        ("source", Kind::bytes()),
        ("topic", Kind::bytes()),
        ("partition", Kind::integer()),
        ("offset", Kind::integer()),
        ("target", Kind::bytes()),
        ("vars", Kind::object(Collection::from(vars))),
        (
            "headers",
            Kind::object(Collection::from_unknown(Kind::any())),
        ),
    ]
    .into_iter()
    .map(|(k, kind)| (k.into(), kind))
    .collect();
    Kind::object(Collection::from(fields).with_unknown(Kind::any()))
}

/// One diagnostic as text: VRL's own rendering (codespan: code, message, `┌─ :LINE:COL`, the
/// excerpt, labels, notes), the file named where the program came from one.
fn render(text: &str, file: Option<&Path>, d: vrl::diagnostic::Diagnostic) -> String {
    let rendered = vrl::diagnostic::Formatter::new(text, vec![d]).to_string();
    let rendered = match file {
        Some(f) => rendered.replace("┌─ :", &format!("┌─ {}:", f.display())),
        None => rendered,
    };
    rendered.trim().to_string()
}

/// Why assigning `path` breaks the metadata rules, if it does: a program may set
/// `%headers` (a header the relay does not set itself), `%path` (not on PostHog targets) and
/// `%skip`; the context paths are read-only (the compiler reports those itself).
fn metadata_rule(path: &OwnedTargetPath, posthog: bool) -> Option<String> {
    if path.prefix != PathPrefix::Metadata {
        return None;
    }
    let segments = &path.path.segments;
    let first = match segments.first() {
        None => return Some(rule_text("%", "assigns the whole metadata object")),
        Some(OwnedSegment::Field(f)) => f.as_str(),
        Some(OwnedSegment::Index(_)) => return Some(rule_text("%[..]", "is not a metadata key")),
    };
    if READ_ONLY.contains(&first) {
        return None; // E315 from the compiler
    }
    match (first, &segments[1..]) {
        ("headers", []) => None,
        ("headers", [OwnedSegment::Field(name)]) => check_header_name(name.as_str())
            .err()
            .map(|why| format!("assigns %headers.{name}: {why}")),
        ("headers", _) => Some(rule_text(
            &format!("%{}", path.path),
            "is not a header (a header is %headers.NAME = \"text\")",
        )),
        ("path", []) if posthog => Some(
            "assigns %path: PostHog targets always send to {url}/batch/; %path is for webhook \
             targets"
                .to_string(),
        ),
        ("path" | "skip", []) => None,
        _ => Some(rule_text(
            &format!("%{}", path.path),
            "is not a metadata key a transform may set",
        )),
    }
}

/// A read of `%vars.NAME` that `transform_vars` does not set (a typo would read null).
fn unknown_var(path: &OwnedTargetPath, vars: &BTreeMap<String, String>) -> Option<String> {
    if path.prefix != PathPrefix::Metadata {
        return None;
    }
    match &path.path.segments[..] {
        [OwnedSegment::Field(root), OwnedSegment::Field(name), ..]
            if root.as_str() == "vars" && !vars.contains_key(name.as_str()) =>
        {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            Some(format!(
                "reads %vars.{name}, which transform_vars does not set (it sets: {})",
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
        _ => None,
    }
}

fn rule_text(path: &str, why: &str) -> String {
    format!(
        "assigns {path}: {why}; a transform may set {} (and reads {})",
        METADATA_KEYS,
        READ_ONLY.map(|k| format!("%{k}")).join(", ")
    )
}
