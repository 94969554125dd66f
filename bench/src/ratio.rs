//! One scenario's row against another's, as the comparisons within a run read them (a
//! transform's cost against webhook, the tap's against the same scenario without it): both ran
//! to the end, their events/s and CPU per event as ratios, and the ratios put in the row's notes.

use serde_json::{json, Value};

/// Whether `row` ran to the end (no error, not skipped).
pub fn measured(row: &Value) -> bool {
    row["error"].is_null() && row["skipped"].is_null()
}

/// Relay CPU seconds per event of a row, from the total `cpu_secs` (`cpu_secs_per_million`
/// keeps one decimal only); `None` when not measured.
pub fn cpu_per_event(row: &Value) -> Option<f64> {
    let cpu = row["cpu_secs"].as_f64()?;
    let events = row["events"].as_f64().filter(|n| *n > 0.0)?;
    Some(cpu / events).filter(|x| *x > 0.0)
}

/// `this` against `base`: (events/s ratio, CPU per event ratio).
pub fn ratios(this: &Value, base: &Value) -> Option<(f64, f64)> {
    let eps =
        this["events_per_sec"].as_f64()? / base["events_per_sec"].as_f64().filter(|x| *x > 0.0)?;
    Some((eps, cpu_per_event(this)? / cpu_per_event(base)?))
}

/// Appends `note` to the row's notes.
pub fn add_note(row: &mut Value, note: String) {
    let notes = row["notes"].as_str().unwrap_or_default();
    row["notes"] = json!(if notes.is_empty() {
        note
    } else {
        format!("{notes}; {note}")
    });
}

/// A measured row for the comparisons' tests.
#[cfg(test)]
pub fn row(name: &str, eps: f64, cpu: f64) -> Value {
    json!({"scenario": name, "events": 100_000, "events_per_sec": eps, "cpu_secs": cpu, "notes": ""})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_rows_measured_and_notes_are_appended() {
        let (eps, cpu) = ratios(&row("a", 9_000.0, 4.4), &row("b", 10_000.0, 4.0)).unwrap();
        assert!((eps - 0.9).abs() < 1e-12 && (cpu - 1.1).abs() < 1e-12);
        assert_eq!(ratios(&row("a", 9_000.0, 4.4), &row("b", 0.0, 4.0)), None);
        assert_eq!(ratios(&row("a", 9_000.0, 0.0), &row("b", 10.0, 4.0)), None);
        let mut r = row("a", 1.0, 1.0);
        add_note(&mut r, "x".into());
        add_note(&mut r, "y".into());
        assert_eq!(r["notes"], "x; y");
        assert!(measured(&r));
        r["skipped"] = json!("no");
        assert!(!measured(&r));
    }
}
