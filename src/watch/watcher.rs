//! The file watcher: a thin layer over notify's inotify watcher that sends every changed path
//! to a channel, and keeps the set of watched roots in step with what [`super::WatchSet::roots`]
//! asks for.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use super::WatchError;

/// A watched root: how, and which directory it was when the watch was added.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Watched {
    recursive: bool,
    /// (device, inode): a directory removed and made again under the same name is a new watch.
    id: (u64, u64),
}

pub struct Watcher {
    inner: RecommendedWatcher,
    roots: BTreeMap<PathBuf, Watched>,
}

impl Watcher {
    /// Starts watching nothing; the paths of every Create, Modify, Remove or rename event
    /// (both names of a rename) of the roots set later go to `tx`. Access events (opens and
    /// reads) are dropped.
    pub fn new(tx: UnboundedSender<PathBuf>) -> Result<Watcher, WatchError> {
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                if ev.need_rescan() {
                    // The kernel's queue overflowed: some changes are lost.
                    tracing::warn!("the file watcher missed events (inotify queue overflow); save again to sync what changed");
                }
                if matches!(ev.kind, EventKind::Access(_)) {
                    return;
                }
                for p in ev.paths {
                    // Closed: the receiver is gone, nobody is listening any more.
                    let _ = tx.send(p);
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        };
        let inner = notify::recommended_watcher(handler).map_err(WatchError::Start)?;
        Ok(Watcher { inner, roots: BTreeMap::new() })
    }

    /// Replaces the watched roots with `roots` (path, recursive): unwatches what is no longer
    /// wanted, watches what is new, and watches again a root whose directory was replaced. A
    /// root that does not exist is skipped (its nearest existing ancestor is expected among the
    /// roots, so its creation is seen and the next call watches it).
    pub fn set_roots(&mut self, roots: &[(PathBuf, bool)]) -> Result<(), WatchError> {
        let mut want: BTreeMap<PathBuf, Watched> = BTreeMap::new();
        for (path, recursive) in roots {
            match std::fs::metadata(path) {
                Ok(m) => {
                    want.insert(
                        path.clone(),
                        Watched { recursive: *recursive, id: (m.dev(), m.ino()) },
                    );
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "not watching a root that does not exist")
                }
            }
        }
        let stale: Vec<PathBuf> = self
            .roots
            .iter()
            .filter(|(p, w)| want.get(*p) != Some(w))
            .map(|(p, _)| p.clone())
            .collect();
        for p in stale {
            self.roots.remove(&p);
            // The kernel drops the watch of a deleted directory by itself: not found is fine.
            if let Err(e) = self.inner.unwatch(&p) {
                tracing::debug!(path = %p.display(), error = %e, "unwatch");
            }
        }
        for (p, w) in want {
            if self.roots.contains_key(&p) {
                continue;
            }
            self.watch(&p, w.recursive)?;
            self.roots.insert(p, w);
        }
        Ok(())
    }

    fn watch(&mut self, path: &Path, recursive: bool) -> Result<(), WatchError> {
        let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        match self.inner.watch(path, mode) {
            Ok(()) => Ok(()),
            // Removed between the check and the watch: as if it had not existed.
            Err(e)
                if matches!(&e.kind, notify::ErrorKind::PathNotFound)
                    || matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) =>
            {
                tracing::debug!(path = %path.display(), "root vanished before it was watched");
                Ok(())
            }
            Err(source) => Err(WatchError::Notify { path: path.to_path_buf(), source }),
        }
    }

    /// The roots watched now.
    pub fn roots(&self) -> Vec<(PathBuf, bool)> {
        self.roots.iter().map(|(p, w)| (p.clone(), w.recursive)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    /// Receives paths until `want` has come (true), or 5 s pass (false).
    async fn saw(rx: &mut UnboundedReceiver<PathBuf>, want: &Path) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if p == want {
                return true;
            }
        }
        false
    }

    /// Lets late events of earlier steps arrive, and drops them.
    async fn drain(rx: &mut UnboundedReceiver<PathBuf>) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
    }

    #[tokio::test]
    async fn real_inotify_events_reach_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        let (tx, mut rx) = unbounded_channel();
        let mut w = Watcher::new(tx).unwrap();
        w.set_roots(&[(root.clone(), true), (root.join("missing"), false)]).unwrap();
        assert_eq!(w.roots(), [(root.clone(), true)]);

        let f = root.join("sub/a.txt");
        std::fs::write(&f, "1").unwrap();
        assert!(saw(&mut rx, &f).await, "write");
        drain(&mut rx).await;
        // An editor's save: write a temporary file, rename it over the original.
        let tmp = root.join("sub/.a.txt.tmp");
        std::fs::write(&tmp, "2").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert!(saw(&mut rx, &f).await, "rename over");
        drain(&mut rx).await;
        std::fs::remove_file(&f).unwrap();
        assert!(saw(&mut rx, &f).await, "delete");
        // A directory made after the watch started is watched too (recursive).
        std::fs::create_dir(root.join("new")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let g = root.join("new/b.txt");
        std::fs::write(&g, "x").unwrap();
        assert!(saw(&mut rx, &g).await, "file in a new directory");

        // Only the new roots after set_roots: the old one is unwatched.
        let other = root.join("other");
        std::fs::create_dir(&other).unwrap();
        w.set_roots(&[(other.clone(), false)]).unwrap();
        drain(&mut rx).await;
        std::fs::write(root.join("sub/ignored.txt"), "x").unwrap();
        let h = other.join("c.txt");
        std::fs::write(&h, "x").unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            got.push(p.clone());
            if p == h {
                break;
            }
        }
        assert!(got.contains(&h), "{got:?}");
        assert!(!got.contains(&root.join("sub/ignored.txt")), "{got:?}");
    }
}
