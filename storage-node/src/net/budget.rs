//! A budget of bytes in flight, shared by concurrent tasks: a push's pieces waiting for
//! their holders, a reader's stripes being fetched and decoded. A task spends what it will
//! hold before it starts and gives it back when the guard drops, so however many tasks
//! run, together they hold at most the budget. A single use larger than the budget is
//! charged the whole budget and so runs alone, rather than never.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Bytes are counted in KiB, so budgets up to 4 TiB fit a semaphore's permits.
const UNIT: u64 = 1024;

#[derive(Debug)]
struct Inner {
    permits: Arc<Semaphore>,
    limit_units: u32,
    held: AtomicU64,
    peak: AtomicU64,
}

/// A budget of bytes; cheap to clone, all clones share it.
#[derive(Debug, Clone)]
pub struct ByteBudget(Arc<Inner>);

/// Bytes spent from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct Spent {
    _permit: OwnedSemaphorePermit,
    units: u32,
    inner: Arc<Inner>,
}

impl Drop for Spent {
    fn drop(&mut self) {
        self.inner
            .held
            .fetch_sub(u64::from(self.units) * UNIT, Ordering::Relaxed);
    }
}

impl ByteBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let limit_units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Self(Arc::new(Inner {
            permits: Arc::new(Semaphore::new(limit_units as usize)),
            limit_units,
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }))
    }

    /// Waits until `bytes` (rounded up to KiB, at most the whole budget) are free, and
    /// spends them.
    pub async fn spend(&self, bytes: u64) -> Result<Spent, AcquireError> {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.0.limit_units);
        let permit = self.0.permits.clone().acquire_many_owned(units).await?;
        let now = self
            .0
            .held
            .fetch_add(u64::from(units) * UNIT, Ordering::Relaxed)
            + u64::from(units) * UNIT;
        self.0.peak.fetch_max(now, Ordering::Relaxed);
        Ok(Spent {
            _permit: permit,
            units,
            inner: self.0.clone(),
        })
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        u64::from(self.0.limit_units) * UNIT
    }

    /// The most bytes spent at once so far.
    pub fn peak(&self) -> u64 {
        self.0.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_spenders_never_hold_more_than_the_budget() {
        let budget = ByteBudget::new(10 << 10);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u64 {
            let b = budget.clone();
            tasks.spawn(async move {
                let _s = b.spend((i % 5 + 1) << 10).await.expect("open");
                tokio::task::yield_now().await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        assert!(budget.peak() <= budget.limit(), "peak {}", budget.peak());
        assert!(budget.peak() >= 5 << 10);
        // All given back: the whole budget can be spent again.
        let all = budget.spend(10 << 10).await.expect("open");
        drop(all);
        // More than the budget is charged the budget, and still runs.
        let big = budget.spend(1 << 30).await.expect("open");
        assert_eq!(budget.peak(), budget.limit());
        drop(big);
    }
}
