//! Key paths in a config tree (`targets[1].retry.max_backoff`): their segments, how they are
//! written, and reading or changing the value at one.

use serde_json::Value;

/// One step of a key path in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// The segments of the path serde_path_to_error recorded.
pub(super) fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `targets[1].retry.max_backoff`
pub(super) fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
        }
    }
    out
}

/// Whether `path` is `ancestor` or lies under it (`a.b[1].c` under `a.b`, `a.b[1]`).
pub(super) fn is_under(path: &str, ancestor: &str) -> bool {
    !ancestor.is_empty()
        && path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The path of the table or list holding the value at `path` (`a.b[1]` → `a.b`), as
/// [`display`] writes paths.
pub(super) fn parent(path: &str) -> &str {
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind('.')
    };
    cut.map_or("", |i| &path[..i])
}

/// `path.key`, or `key` at the top.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn get<'a>(mut v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get(k)?,
            Seg::Index(i) => v.get(i)?,
        };
    }
    Some(v)
}

pub(super) fn get_mut<'a>(mut v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get_mut(k)?,
            Seg::Index(i) => v.get_mut(i)?,
        };
    }
    Some(v)
}

/// Sets the value at `at`, adding the key when its table lacks it.
pub(super) fn put(tree: &mut Value, at: &[Seg], value: Value) -> bool {
    let Some((last, parent)) = at.split_last() else {
        return false;
    };
    match (get_mut(tree, parent), last) {
        (Some(Value::Object(m)), Seg::Key(k)) => {
            m.insert(k.clone(), value);
            true
        }
        (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
            a[*i] = value;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_joined_and_taken_apart() {
        let path = [
            Seg::Key("targets".into()),
            Seg::Index(1),
            Seg::Key("retry".into()),
        ];
        assert_eq!(display(&path), "targets[1].retry");
        assert_eq!(parent("targets[1].retry"), "targets[1]");
        assert_eq!(parent("targets[1]"), "targets");
        assert_eq!(parent("targets"), "");
        assert_eq!(join("", "kafka"), "kafka");
        assert_eq!(join("kafka", "brokers"), "kafka.brokers");
        assert!(is_under("targets[1].retry", "targets[1]"));
        assert!(is_under("targets[1]", "targets"));
        assert!(!is_under("targets[10]", "targets[1]"));
        assert!(!is_under("kafka", ""));
    }
}
