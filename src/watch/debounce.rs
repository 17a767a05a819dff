//! Grouping the watcher's stream of paths into batches: a save is several events (write, rename,
//! attributes), a `git checkout` thousands; acting once per quiet moment does each thing once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

/// One debounced batch of changed paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Deduplicated, in order of first arrival; never empty.
    pub paths: Vec<PathBuf>,
    /// When the batch's first path arrived (by tokio's clock, so paused-time tests see it move).
    pub first_event: Instant,
}

/// The longest a batch waits for quiet, as a multiple of `quiet`.
const CAP_FACTOR: u32 = 10;
/// ... and at least this.
const MIN_CAP: Duration = Duration::from_secs(1);

/// Collects paths until `quiet` passes with no new one, then returns the batch. A batch is cut
/// anyway once it is older than 10 × `quiet` (at least 1 s), so that a tree that never goes
/// quiet (a build writing into it) still gets acted on. Returns `None` when the channel is
/// closed and nothing is pending.
pub async fn next_batch(rx: &mut UnboundedReceiver<PathBuf>, quiet: Duration) -> Option<Batch> {
    let first = rx.recv().await?;
    let start = tokio::time::Instant::now();
    let cap_at = start + (quiet * CAP_FACTOR).max(MIN_CAP);
    let mut seen = HashSet::from([first.clone()]);
    let mut paths = vec![first];
    loop {
        let wake = (tokio::time::Instant::now() + quiet).min(cap_at);
        match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(Some(p)) => {
                if seen.insert(p.clone()) {
                    paths.push(p);
                }
            }
            // Closed: what is pending is still a batch; the next call returns None.
            Ok(None) | Err(_) => break,
        }
    }
    Some(Batch { paths, first_event: start.into_std() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    const Q: Duration = Duration::from_millis(100);

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_ends_after_quiet_deduplicated_in_arrival_order() {
        let (tx, mut rx) = unbounded_channel();
        let t0 = tokio::time::Instant::now();
        tokio::spawn({
            let tx = tx.clone();
            async move {
                for (delay, path) in [(0, "/a"), (50, "/b"), (90, "/a"), (90, "/c")] {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    tx.send(p(path)).unwrap();
                }
                // After the quiet period: the next batch.
                tokio::time::sleep(Duration::from_millis(500)).await;
                tx.send(p("/d")).unwrap();
            }
        });
        let b = next_batch(&mut rx, Q).await.unwrap();
        assert_eq!(b.paths, [p("/a"), p("/b"), p("/c")]);
        assert_eq!(b.first_event, t0.into_std());
        // Ended one quiet period after the last event (at 230 ms).
        assert_eq!(tokio::time::Instant::now() - t0, Duration::from_millis(330));
        let b = next_batch(&mut rx, Q).await.unwrap();
        assert_eq!(b.paths, [p("/d")]);
        assert_eq!(b.first_event, (t0 + Duration::from_millis(730)).into_std());
    }

    #[tokio::test(start_paused = true)]
    async fn a_never_quiet_stream_is_cut_at_the_cap() {
        let (tx, mut rx) = unbounded_channel();
        let t0 = tokio::time::Instant::now();
        tokio::spawn(async move {
            for i in 0.. {
                if tx.send(p(&format!("/f{i}"))).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let b = next_batch(&mut rx, Q).await.unwrap();
        // 10 × 100 ms = 1 s: events at 0, 50, ..., 950 ms (1000 ms is the cap's instant).
        assert_eq!(tokio::time::Instant::now() - t0, Duration::from_secs(1));
        assert!((20..=21).contains(&b.paths.len()), "{}", b.paths.len());
        let b2 = next_batch(&mut rx, Q).await.unwrap();
        assert!(!b2.paths.is_empty() && b2.paths[0] != b.paths[0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_quiet_is_capped_at_one_second_at_least() {
        let (tx, mut rx) = unbounded_channel();
        let t0 = tokio::time::Instant::now();
        tokio::spawn(async move {
            for i in 0..1000 {
                if tx.send(p(&format!("/f{i}"))).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        next_batch(&mut rx, Duration::from_millis(10)).await.unwrap();
        assert_eq!(tokio::time::Instant::now() - t0, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_flushes_what_is_pending_then_ends() {
        let (tx, mut rx) = unbounded_channel();
        tx.send(p("/a")).unwrap();
        tx.send(p("/b")).unwrap();
        drop(tx);
        let b = next_batch(&mut rx, Q).await.unwrap();
        assert_eq!(b.paths, [p("/a"), p("/b")]);
        assert_eq!(next_batch(&mut rx, Q).await, None);
    }
}
