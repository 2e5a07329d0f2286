//! The node's background work: one owned, bounded, cancellable set of tasks.
//!
//! Every task a node starts, from a request handler to an audit round, is a [`Work`] of
//! some kind spawned through [`Workers`]. Each kind has a concurrency cap; a spawn beyond
//! it is refused at once (the caller decides what refusal means: a `Busy` answer, a
//! skipped round, work put back for later), so nothing queues without bound and a slow
//! kind of work cannot crowd out the others. Blocking store work runs on tokio's blocking
//! pool through the same set. Shutdown cancels everything, waits for every task,
//! blocking ones included, and only then may the store close: no task outlives the node.
//!
//! Periodic work is timed by the swarm task's timers; a kind capped at one is
//! single-flight: a round still running when the next is due delays it, never doubles it.

use std::{future::Future, sync::Arc};

use prometheus_client::metrics::{family::Family, gauge::Gauge};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{MAX_HANDLERS, MAX_HOLDS};
use crate::net::metrics::WorkLabels;

/// The kinds of work a node does in the background, each with its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Work {
    /// An inbound control request other than `Hold`.
    Handler,
    /// An inbound `Hold` (kept apart so a flood of pieces never starves lookups).
    Hold,
    /// Announcing everything this node holds.
    Announce,
    /// Announcing pieces stored since the last announcement.
    Fresh,
    /// Collecting unreferenced pieces and pruning old audit records.
    Orphans,
    /// Comparing manifest versions with one peer.
    CatchUp,
    /// Fetching one manifest announced on gossip.
    Manifest,
    /// Sending one audit round's records to the audited stripes' co-holders.
    Records,
    /// Checking the placement records offered through the DHT (one worker drains the
    /// queue; a second may start while the first is finishing).
    Offers,
    /// Taking the placement records of a newly kept version's stripes held here.
    Adopt,
    /// One audit round.
    Audit,
    /// One scrub pass over this node's pieces.
    Scrub,
    /// Repairing one stripe.
    Repair,
    /// Challenging a repair claimer to vet its claim.
    Vet,
    /// Resuming repair jobs journalled by an earlier run.
    Resume,
}

impl Work {
    const ALL: [Work; 15] = [
        Work::Handler,
        Work::Hold,
        Work::Announce,
        Work::Fresh,
        Work::Orphans,
        Work::CatchUp,
        Work::Manifest,
        Work::Records,
        Work::Offers,
        Work::Adopt,
        Work::Audit,
        Work::Scrub,
        Work::Repair,
        Work::Vet,
        Work::Resume,
    ];

    /// Most tasks of this kind at once.
    pub(super) fn cap(self) -> usize {
        match self {
            Work::Handler => MAX_HANDLERS,
            Work::Hold => MAX_HOLDS,
            Work::Repair | Work::Vet => 8,
            Work::CatchUp | Work::Manifest => 4,
            Work::Fresh | Work::Adopt | Work::Offers | Work::Records => 2,
            Work::Announce | Work::Orphans | Work::Audit | Work::Scrub | Work::Resume => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Work::Handler => "handler",
            Work::Hold => "hold",
            Work::Announce => "announce",
            Work::Fresh => "fresh",
            Work::Orphans => "orphans",
            Work::CatchUp => "catch_up",
            Work::Manifest => "manifest",
            Work::Records => "records",
            Work::Offers => "offers",
            Work::Adopt => "adopt",
            Work::Audit => "audit",
            Work::Scrub => "scrub",
            Work::Repair => "repair",
            Work::Vet => "vet",
            Work::Resume => "resume",
        }
    }
}

/// A spawn refused because its kind of work is at its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full(pub(super) Work);

/// The node's task set.
pub(super) struct Workers {
    tracker: TaskTracker,
    cancel: CancellationToken,
    slots: Vec<Arc<Semaphore>>,
}

impl Workers {
    /// A task set cancelled with `cancel` (a child of the node's token).
    pub(super) fn new(cancel: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel,
            slots: Work::ALL
                .iter()
                .map(|w| Arc::new(Semaphore::new(w.cap())))
                .collect(),
        }
    }

    fn slot(&self, work: Work) -> &Arc<Semaphore> {
        &self.slots[work as usize]
    }

    /// Starts `task` as `work`, or refuses if that kind is at its cap or the node is
    /// stopping. The task is dropped at its next await once the node stops.
    pub(super) fn spawn<F>(&self, work: Work, task: F) -> Result<(), Full>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.cancel.is_cancelled() {
            return Err(Full(work));
        }
        let permit = self
            .slot(work)
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full(work))?;
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            cancel.run_until_cancelled(task).await;
            drop(permit);
        });
        Ok(())
    }

    /// Whether a task of `work` is running.
    pub(super) fn busy(&self, work: Work) -> bool {
        self.slot(work).available_permits() < work.cap()
    }

    /// Runs `f` on the blocking pool as part of this set, so shutdown waits for it.
    pub(super) fn blocking<T, F>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(f)
    }

    /// Sets `gauge` to how many tasks of each kind are running.
    pub(super) fn report(&self, gauge: &Family<WorkLabels, Gauge>) {
        for w in Work::ALL {
            let running = w.cap() - self.slot(w).available_permits();
            gauge
                .get_or_create(&WorkLabels { work: w.name() })
                .set(i64::try_from(running).unwrap_or(i64::MAX));
        }
    }

    /// Cancels every task and waits until all have ended.
    pub(super) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_kind_has_its_own_slot() {
        // `slot` indexes by discriminant: `ALL` must list the kinds in declaration order.
        for (i, w) in Work::ALL.iter().enumerate() {
            assert_eq!(*w as usize, i, "{w:?}");
        }
        let w = Workers::new(CancellationToken::new());
        for k in Work::ALL {
            assert_eq!(w.slot(k).available_permits(), k.cap(), "{k:?}");
        }
    }

    #[tokio::test]
    async fn a_kind_at_its_cap_is_refused_and_others_are_not() {
        let w = Workers::new(CancellationToken::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        w.spawn(Work::Audit, async move {
            rx.await.ok();
        })
        .unwrap();
        assert!(w.busy(Work::Audit));
        assert_eq!(w.spawn(Work::Audit, async {}), Err(Full(Work::Audit)));
        w.spawn(Work::Scrub, async {}).unwrap();
        tx.send(()).unwrap();
        // The slot comes back when the task ends.
        for _ in 0..1000 {
            if !w.busy(Work::Audit) {
                break;
            }
            tokio::task::yield_now().await;
        }
        w.spawn(Work::Audit, async {}).unwrap();
        w.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_cancels_and_waits_for_every_task_blocking_ones_included() {
        let w = Workers::new(CancellationToken::new());
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let e = ended.clone();
            w.spawn(Work::Handler, async move {
                // Never ends by itself: only cancellation stops it.
                std::future::pending::<()>().await;
                e.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
        }
        let e = ended.clone();
        let blocking = w.blocking(move || {
            std::thread::sleep(Duration::from_millis(200));
            e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        drop(blocking);
        w.shutdown().await;
        // The blocking task finished before shutdown returned; the pending ones were
        // dropped, not run on.
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(w.spawn(Work::Handler, async {}), Err(Full(Work::Handler)));
    }
}
