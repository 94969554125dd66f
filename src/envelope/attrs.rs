//! Declared user attributes: the names (and `*`/`?` globs) a source or a catalog file declares
//! as user attributes, so that for events the catalog does not know they go to `user.traits`
//! instead of `properties`. Compiled once (exact names in a hash set, globs into one anchored
//! regular expression).

use std::collections::HashSet;

/// Most entries one declaration may hold.
pub const MAX_USER_ATTRIBUTES: usize = 10_000;
/// Longest entry (a name or a glob).
pub const MAX_USER_ATTRIBUTE_LEN: usize = 256;

/// A user-attribute entry that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttributePatternError {
    #[error("entry {0} is empty")]
    Empty(usize),
    #[error(
        "entry {index} is {len} characters, longer than the limit of {MAX_USER_ATTRIBUTE_LEN}"
    )]
    TooLong { index: usize, len: usize },
    #[error("{0} entries, more than the limit of {MAX_USER_ATTRIBUTES}")]
    TooMany(usize),
    #[error("the patterns do not compile: {0}")]
    Compile(String),
}

impl AttributePatternError {
    /// The index of the entry at fault, if it is one entry.
    pub fn index(&self) -> Option<usize> {
        match self {
            AttributePatternError::Empty(i) | AttributePatternError::TooLong { index: i, .. } => {
                Some(*i)
            }
            _ => None,
        }
    }
}

/// A compiled set of declared user attributes.
#[derive(Clone, Debug, Default)]
pub struct UserAttributes {
    names: HashSet<String>,
    globs: Option<regex::Regex>,
}

/// One glob as regex text: `*` any run of characters, `?` one character, the rest literal.
fn glob_to_regex(glob: &str, out: &mut String) {
    let mut buf = [0u8; 4];
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
}

impl UserAttributes {
    /// Compiles names and globs (entries containing `*` or `?`).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, AttributePatternError> {
        if entries.len() > MAX_USER_ATTRIBUTES {
            return Err(AttributePatternError::TooMany(entries.len()));
        }
        let mut names = HashSet::default();
        let mut alternatives = Vec::new();
        for (index, e) in entries.iter().enumerate() {
            let e = e.as_ref();
            if e.is_empty() {
                return Err(AttributePatternError::Empty(index));
            }
            if e.chars().count() > MAX_USER_ATTRIBUTE_LEN {
                return Err(AttributePatternError::TooLong {
                    index,
                    len: e.chars().count(),
                });
            }
            if e.contains(['*', '?']) {
                let mut re = String::new();
                glob_to_regex(e, &mut re);
                alternatives.push(re);
            } else {
                names.insert(e.to_string());
            }
        }
        let globs = if alternatives.is_empty() {
            None
        } else {
            let text = format!("^(?:{})$", alternatives.join("|"));
            Some(
                regex::RegexBuilder::new(&text)
                    .size_limit(8 << 20)
                    .build()
                    .map_err(|e| AttributePatternError::Compile(e.to_string()))?,
            )
        };
        Ok(Self { names, globs })
    }

    /// Whether no attribute is declared.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.globs.is_none()
    }

    /// Whether `key` is a declared user attribute.
    #[inline]
    pub fn matches(&self, key: &str) -> bool {
        self.names.contains(key) || self.globs.as_ref().is_some_and(|g| g.is_match(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs_match() {
        let a = UserAttributes::new(&["favourite_team", "utm_*", "q?", "a.b"]).unwrap();
        assert!(a.matches("favourite_team"));
        assert!(a.matches("utm_source"));
        assert!(a.matches("utm_"));
        assert!(a.matches("q1"));
        assert!(!a.matches("q12"));
        assert!(a.matches("a.b"));
        assert!(!a.matches("axb"), "a dot is literal");
        assert!(!a.matches("postcode"));
        assert!(!a.matches("xutm_source"), "globs are anchored");
        assert!(UserAttributes::default().is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            UserAttributes::new(&["ok", ""]).unwrap_err(),
            AttributePatternError::Empty(1)
        );
        let long = "x".repeat(MAX_USER_ATTRIBUTE_LEN + 1);
        assert_eq!(UserAttributes::new(&[long]).unwrap_err().index(), Some(0));
    }
}
