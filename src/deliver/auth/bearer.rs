//! `auth = { kind = "bearer", token_file }`: the file's content, trimmed, as the bearer token,
//! read again when the file changes.
//!
//! Kubernetes updates a mounted Secret or projected token by writing a new directory and
//! swapping a symlink to it, so the file is replaced, not rewritten in place, and can be
//! missing for a moment. The file's identity (modification time, length and, on Unix, device
//! and inode) is looked at when a request needs the token, at most once per [`RECHECK`]; the
//! file is read again only when it changed. A read that fails (missing, empty, unusable) keeps
//! the last good token, so the swap costs nothing; without any good token yet a request fails
//! retryably (`Failure::TokenFile`). A 401 from the target looks at the file at once.
//!
//! Polling on the request path rather than a watcher: no thread or inotify handle per target,
//! and a check is one `stat` (and rarely a read of a small file), done inline under a mutex —
//! short enough not to matter to the async runtime at one per second.

use super::{Credential, Refreshes};
use crate::config::{read_token_file, TokenFileError};
use crate::report::Failure;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The most often the file is looked at while requests flow.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// A bearer token kept in a file.
pub(in crate::deliver) struct BearerFile {
    target: String,
    path: PathBuf,
    state: Mutex<State>,
    refreshes: Option<Refreshes>,
}

/// What is known of the file.
#[derive(Default)]
struct State {
    /// The last good token (kept while the file cannot be read).
    token: Option<Credential>,
    /// The identity of the file the token was read from.
    stamp: Option<Stamp>,
    /// When the file was last looked at.
    checked: Option<Instant>,
    /// Why the last look found no usable token, if it did not (logged once per change).
    error: Option<TokenFileError>,
}

/// What tells one version of the file from the next without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Device and inode: a swapped symlink points at another file even when time and length
    /// happen to match.
    file_id: (u64, u64),
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        #[cfg(unix)]
        let file_id = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let file_id = (0, 0);
        Ok(Self {
            modified: m.modified().ok(),
            len: m.len(),
            file_id,
        })
    }
}

impl BearerFile {
    pub(super) fn new(target: &str, path: &Path, refreshes: Option<Refreshes>) -> Self {
        Self {
            target: target.to_string(),
            path: path.to_path_buf(),
            state: Mutex::new(State::default()),
            refreshes,
        }
    }

    /// The token for the next request (the file looked at if [`RECHECK`] has passed).
    pub(super) fn credential(&self) -> Result<Credential, Failure> {
        self.check(false)
    }

    /// After a 401 to the token of generation `rejected`: the file looked at now; its token if
    /// it changed since, `None` if not (the 401 stands).
    pub(super) fn renew(&self, rejected: u64) -> Result<Option<Credential>, Failure> {
        let c = self.check(true)?;
        Ok((c.generation != rejected).then_some(c))
    }

    fn check(&self, now: bool) -> Result<Credential, Failure> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now || st.checked.is_none_or(|at| at.elapsed() >= RECHECK) {
            st.checked = Some(Instant::now());
            self.look(&mut st);
        }
        match (&st.token, &st.error) {
            (Some(token), _) => Ok(token.clone()),
            (None, Some(e)) => Err(Failure::TokenFile(e.clone())),
            // Not reached: the first call looks, and a look leaves a token or an error.
            (None, None) => Err(Failure::TokenFile(TokenFileError::Unreadable {
                path: self.path.display().to_string(),
                cause: "not read yet".into(),
            })),
        }
    }

    /// Reads the file if it is not the one the token came from.
    fn look(&self, st: &mut State) {
        let stamp = match Stamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(e) => {
                let path = self.path.display().to_string();
                let cause = e.to_string();
                return self.failed(st, TokenFileError::Unreadable { path, cause });
            }
        };
        if st.token.is_some() && st.stamp.as_ref() == Some(&stamp) {
            return;
        }
        let generation = st.token.as_ref().map_or(1, |t| t.generation + 1);
        let read = read_token_file(&self.path).and_then(|token| {
            Credential::bearer(&token, generation).ok_or(TokenFileError::NotHeaderText {
                path: self.path.display().to_string(),
            })
        });
        match read {
            Ok(c) => {
                let changed = st.token.as_ref().is_none_or(|t| t.header != c.header);
                if changed {
                    Refreshes::count(&self.refreshes, true);
                    tracing::info!(target_name = %self.target, file = %self.path.display(), "bearer token read from its file");
                    st.token = Some(c);
                }
                st.stamp = Some(stamp);
                st.error = None;
            }
            Err(e) => self.failed(st, e),
        }
    }

    fn failed(&self, st: &mut State, e: TokenFileError) {
        Refreshes::count(&self.refreshes, false);
        if st.error.as_ref() != Some(&e) {
            let kept = if st.token.is_some() {
                "keeping the last token read"
            } else {
                "no token yet: deliveries fail and are retried"
            };
            tracing::warn!(target_name = %self.target, error = %e, "bearer token file unusable; {kept}");
        }
        st.error = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(c: &Credential) -> &str {
        c.header.to_str().unwrap()
    }

    #[test]
    fn a_changed_file_gives_a_new_token_and_a_missing_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = BearerFile::new("crm", &path, None);
        let Err(Failure::TokenFile(TokenFileError::Unreadable { .. })) = file.credential() else {
            panic!("a missing file is no token");
        };
        std::fs::write(&path, "first\n").unwrap();
        // A 401 looks at the file at once, whenever the last look was.
        let first = file.renew(0).unwrap().unwrap();
        assert_eq!(token(&first), "Bearer first");
        // Replaced as Kubernetes does: a new file moved over the old one.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let second = file.renew(first.generation).unwrap().unwrap();
        assert_eq!(token(&second), "Bearer second");
        assert_ne!(second.generation, first.generation);
        // Unchanged: a 401 stands.
        assert!(file.renew(second.generation).unwrap().is_none());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token(&file.check(true).unwrap()), "Bearer second");
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(token(&file.check(true).unwrap()), "Bearer second");
    }

    #[test]
    fn the_file_is_looked_at_once_per_recheck_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let file = BearerFile::new("crm", &path, None);
        assert_eq!(token(&file.credential().unwrap()), "Bearer first");
        std::fs::write(&path, "second-token").unwrap();
        // As if the last look had just been made: the file is not looked at.
        file.state.lock().unwrap().checked = Some(Instant::now() + Duration::from_secs(3600));
        assert_eq!(token(&file.credential().unwrap()), "Bearer first");
        // As if RECHECK had passed since the last look.
        file.state.lock().unwrap().checked = Some(Instant::now() - RECHECK);
        assert_eq!(token(&file.credential().unwrap()), "Bearer second-token");
    }
}
