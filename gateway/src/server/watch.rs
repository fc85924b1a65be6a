//! Reloads the configuration when its files change (polled, debounced) and on SIGHUP.
//!
//! Polling the directory's few files once a second costs nothing measurable and works on
//! every filesystem and in every container (mounted ConfigMaps swap a symlink, which
//! inotify-style watchers miss). A change is acted on once the files have stopped changing
//! for the debounce time, so an editor's or a deploy's several writes make one reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Gateway;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// How long the files must stay unchanged before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What the files look like: each file's path, length and modification time.
pub type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The files' stamp now. Take it before loading the configuration and hand it to
/// [`watch`], so a change made while the gateway starts is not missed.
pub fn stamp(dir: &Path) -> Stamp {
    let mut out = Vec::new();
    let mut add = |path: PathBuf| {
        // `metadata` follows symlinks: a swapped ConfigMap link shows as a change.
        if let Ok(m) = std::fs::metadata(&path)
            && m.is_file()
        {
            out.push((path, m.len(), m.modified().ok()));
        }
    };
    add(dir.join("gateway.yaml"));
    if let Ok(entries) = std::fs::read_dir(dir.join("routes")) {
        for e in entries.flatten() {
            // Editors' swap and backup files are not configuration.
            let name = e.file_name().to_string_lossy().into_owned();
            let dropping = name.starts_with('.')
                || name.ends_with('~')
                || [".swp", ".swx", ".tmp", ".bak"]
                    .iter()
                    .any(|s| name.ends_with(s));
            if !dropping {
                add(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Watches `dir` and reloads `gateway` after each settled change from `baseline` (the
/// stamp of the files the running configuration was read from); runs until the task is
/// dropped.
pub async fn watch(gateway: Arc<Gateway>, dir: PathBuf, baseline: Stamp) {
    let mut last = baseline;
    loop {
        tokio::time::sleep(POLL).await;
        let mut now = stamp(&dir);
        if now == last {
            continue;
        }
        loop {
            tokio::time::sleep(DEBOUNCE).await;
            let again = stamp(&dir);
            if again == now {
                break;
            }
            now = again;
        }
        last = now;
        tracing::info!(target: "portico::reload", dir = %dir.display(), "configuration files changed");
        // A refusal is logged and counted by `reload`; the running config stays.
        let _ = gateway.reload().await;
    }
}

/// Reloads `gateway` on every SIGHUP; runs until the task is dropped.
pub async fn on_hangup(gateway: Arc<Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!(target: "portico::reload", "SIGHUP received");
            let _ = gateway.reload().await;
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}
