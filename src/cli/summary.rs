//! `event-relay normalize --summary`: prints a sample's [`Summary`] — counts per event ×
//! status, the reasons of messages rejected before validation, the top problems per property.

use crate::normalize::summary::{Summary, NO_EVENT, STATUSES};
use std::io::Write;

/// Writes the report.
pub fn print(out: &mut impl Write, s: &Summary, top: usize) -> std::io::Result<()> {
    let totals = s.totals();
    let parts: Vec<String> = STATUSES
        .iter()
        .zip(totals)
        .map(|(st, n)| format!("{st} {n}"))
        .collect();
    writeln!(
        out,
        "events: {} ({})",
        totals.iter().sum::<u64>(),
        parts.join(", ")
    )?;
    writeln!(out)?;
    let width = s
        .by_event
        .keys()
        .map(String::len)
        .chain([5])
        .max()
        .unwrap_or(5);
    let head: Vec<String> = STATUSES.iter().map(|st| st.to_uppercase()).collect();
    write!(out, "{:<width$}", "EVENT")?;
    for h in &head {
        write!(out, "  {h:>w$}", w = h.len().max(5))?;
    }
    writeln!(out)?;
    for (event, counts) in &s.by_event {
        write!(out, "{event:<width$}")?;
        for (h, n) in head.iter().zip(counts) {
            write!(out, "  {n:>w$}", w = h.len().max(5))?;
        }
        writeln!(out)?;
    }
    if !s.rejected_reasons.is_empty() {
        let reasons: Vec<String> = s
            .rejected_reasons
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        writeln!(
            out,
            "\nrejected before validation ({NO_EVENT}): {}",
            reasons.join(", ")
        )?;
    }
    let (problems, groups) = s.top_problems(top);
    writeln!(out, "\ntop problems ({} of {groups}):", problems.len())?;
    if problems.is_empty() {
        return Ok(());
    }
    let ev_w = problems
        .iter()
        .map(|p| p.key.event.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let path_w = problems
        .iter()
        .map(|p| p.key.path.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    writeln!(
        out,
        "{:>5}  {:<ev_w$}  {:<path_w$}  {:<13}  EXAMPLE",
        "COUNT", "EVENT", "PROPERTY", "RULE"
    )?;
    for p in problems {
        let path = if p.key.path.is_empty() {
            "-"
        } else {
            &p.key.path
        };
        writeln!(
            out,
            "{:>5}  {:<ev_w$}  {path:<path_w$}  {:<13}  {}",
            p.count,
            p.key.event,
            p.key.rule.as_str(),
            p.example
        )?;
    }
    Ok(())
}
