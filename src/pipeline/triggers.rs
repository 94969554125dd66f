//! What starts a reload of the `run` binary: SIGHUP, and with `--watch-config` a change of the
//! config file's bytes or of a catalog file it loads. The file is polled once a second (read and hashed: config files are
//! small, and polling sees a Kubernetes ConfigMap's symlink swap or an editor's rename, which
//! inotify watches on the file itself miss), so no file-watching dependency is needed.

use super::reload::{config_hash, Reloader};
use super::{Relay, StartError};
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often `--watch-config` looks at the file.
const POLL: Duration = Duration::from_secs(1);

/// Like [`crate::run`], for a config read from `path` (whose bytes it had at start name it in
/// `event_relay_config_info`): SIGHUP reloads `path`, and so does a change of its bytes when
/// `watch` is set.
pub async fn run_reloadable(
    config: Config,
    path: PathBuf,
    watch: bool,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let hash = file_hash(&path);
    let relay = Relay::start(config, shutdown.clone()).await?;
    let reloader = relay.reloader();
    if let Some(hash) = &hash {
        reloader.set_hash(hash);
    }
    let reloads = tokio::spawn(serve_reloads(reloader, path, hash, watch, shutdown));
    relay.consume().await;
    let unfinished = relay.drain().await;
    let _ = reloads.await; // ended by `shutdown`
    relay.stop(unfinished).await;
    Ok(())
}

/// Reloads `path` on SIGHUP, and with `watch` whenever its bytes' hash differs from the last
/// one seen (`seen`: the running file's), until `shutdown`. A file that keeps an invalid
/// content is reported once, not every second.
pub async fn serve_reloads(
    reloader: Reloader,
    path: PathBuf,
    mut seen: Option<String>,
    watch: bool,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; config reloads are off");
            return;
        }
    };
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {
                tracing::info!(path = %path.display(), "SIGHUP: reloading the config");
                seen = file_hash(&path);
                let _ = reloader.reload_file(&path);
            }
            _ = poll.tick(), if watch => {
                let now = file_hash(&path);
                if now.is_some() && now != seen {
                    tracing::info!(path = %path.display(), "config file changed: reloading");
                    seen = now;
                    let _ = reloader.reload_file(&path);
                }
            }
        }
    }
}

/// The hash of the config file's bytes followed by those of the catalog files it loads
/// (`[[catalogs]]`), so `--watch-config` also sees a changed catalog; `None` while the config
/// cannot be read. A catalog file that cannot be read counts as empty (the reload then names
/// it).
fn file_hash(path: &Path) -> Option<String> {
    let mut bytes = std::fs::read(path).ok()?;
    if let Ok(config) = crate::config::load(path) {
        for c in &config.catalogs {
            bytes.extend_from_slice(&std::fs::read(&c.path).unwrap_or_default());
        }
    }
    Some(config_hash(&bytes))
}
