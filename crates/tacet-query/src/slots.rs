//! Query slots shared fairly between tenants.
//!
//! `max_concurrent` queries run at once, and one tenant holds at most `max_concurrent_per_tenant` of them,
//! so the slots it cannot take stay free for everyone else. A query that finds no slot waits in a queue
//! (at most `max_queued_per_tenant` of a tenant's queries wait; more are refused at once); when a slot
//! frees, it goes to the waiting tenant that runs the fewest queries, the longest waiting first among
//! equals. Lifecycle jobs (erasure, compaction, retention) take every slot with [`Slots::exclusive`]: it
//! waits for the running queries to end, and queries that come after it wait for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tacet_model::TenantId;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// The slot rules (`[query]`'s `max_concurrent`, `max_concurrent_per_tenant`, `max_queued_per_tenant`,
/// `queue_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotRules {
    pub(crate) total: usize,
    pub(crate) per_tenant: usize,
    pub(crate) queued_per_tenant: usize,
    pub(crate) queue_timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct Slots {
    rules: SlotRules,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<TenantId, usize>,
    total_running: usize,
    /// An exclusive holder is active: nothing else runs.
    exclusive: bool,
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    /// `None`: an exclusive waiter.
    tenant: Option<TenantId>,
    grant: oneshot::Sender<Grant>,
}

/// A grant in flight to a waiter; turned into its guard by the waiter.
#[derive(Debug)]
struct Grant(Option<SlotGuard>);

/// A query slot (or, from [`Slots::exclusive`], all of them), given back when dropped.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<Slots>,
    /// `None`: the exclusive guard.
    tenant: Option<TenantId>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.release(self.tenant.take());
    }
}

impl Slots {
    pub(crate) fn new(rules: SlotRules) -> Arc<Self> {
        let rules = SlotRules {
            total: rules.total.max(1),
            per_tenant: rules.per_tenant.clamp(1, rules.total.max(1)),
            queued_per_tenant: rules.queued_per_tenant,
            queue_timeout: rules.queue_timeout,
        };
        Arc::new(Self {
            rules,
            state: Mutex::new(State::default()),
        })
    }

    /// A slot for one of `tenant`'s queries: at once, after waiting in the queue, or `Error::Busy` (the
    /// tenant's queue is full, or no slot came within `queue_timeout`).
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> Result<SlotGuard> {
        let (id, rx) = {
            let mut state = self.lock();
            let queued = state
                .waiting
                .iter()
                .filter(|w| w.tenant.as_ref() == Some(tenant) && !w.grant.is_closed())
                .count();
            if queued >= self.rules.queued_per_tenant {
                return Err(Error::Busy(format!(
                    "tenant {tenant} already has {} queries running and {queued} waiting \
                     (query.max_concurrent_per_tenant = {}, query.max_queued_per_tenant = {}); retry \
                     when one has finished",
                    state.running.get(tenant).copied().unwrap_or(0),
                    self.rules.per_tenant,
                    self.rules.queued_per_tenant
                )));
            }
            let (tx, rx) = oneshot::channel();
            let id = state.next_id;
            state.next_id += 1;
            state.waiting.push_back(Waiter {
                id,
                tenant: Some(tenant.clone()),
                grant: tx,
            });
            self.dispatch(&mut state);
            (id, rx)
        };
        self.wait(id, rx, Some(tenant)).await
    }

    /// Every slot, once the running queries have ended; queries asked for meanwhile wait behind it.
    pub(crate) async fn exclusive(self: &Arc<Self>) -> Result<SlotGuard> {
        let (id, rx) = {
            let mut state = self.lock();
            let (tx, rx) = oneshot::channel();
            let id = state.next_id;
            state.next_id += 1;
            state.waiting.push_back(Waiter {
                id,
                tenant: None,
                grant: tx,
            });
            self.dispatch(&mut state);
            (id, rx)
        };
        match rx.await {
            Ok(Grant(Some(guard))) => Ok(guard),
            _ => {
                self.forget(id);
                Err(Error::Internal("the query slots are closed".into()))
            }
        }
    }

    /// Queries running now: all of them, and `tenant`'s.
    pub(crate) fn running(&self, tenant: &TenantId) -> (usize, usize) {
        let state = self.lock();
        (
            state.total_running,
            state.running.get(tenant).copied().unwrap_or(0),
        )
    }

    async fn wait(
        self: &Arc<Self>,
        id: u64,
        mut rx: oneshot::Receiver<Grant>,
        tenant: Option<&TenantId>,
    ) -> Result<SlotGuard> {
        match tokio::time::timeout(self.rules.queue_timeout, &mut rx).await {
            Ok(Ok(Grant(Some(guard)))) => Ok(guard),
            Ok(_) => Err(Error::Internal("the query slots are closed".into())),
            Err(_) => {
                if !self.forget(id) {
                    // Granted just as the wait ran out: take it.
                    if let Ok(Grant(Some(guard))) = rx.try_recv() {
                        return Ok(guard);
                    }
                }
                let runs = tenant.map_or(0, |t| self.running(t).1);
                let tenant = tenant.map(|t| t.to_string()).unwrap_or_default();
                Err(Error::Busy(format!(
                    "no query slot came free within {}s (query.max_concurrent = {}, at most {} a tenant; \
                     tenant {tenant} runs {runs}); retry shortly",
                    self.rules.queue_timeout.as_secs_f64(),
                    self.rules.total,
                    self.rules.per_tenant,
                )))
            }
        }
    }

    /// Removes a waiter still in the queue; false if it was not there (granted meanwhile).
    fn forget(&self, id: u64) -> bool {
        let mut state = self.lock();
        match state.waiting.iter().position(|w| w.id == id) {
            Some(i) => {
                state.waiting.remove(i);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn may_run(&self, state: &State, tenant: &TenantId) -> bool {
        !state.exclusive
            && state.total_running < self.rules.total
            && state.running.get(tenant).copied().unwrap_or(0) < self.rules.per_tenant
    }

    fn grant(self: &Arc<Self>, state: &mut State, tenant: Option<TenantId>) -> SlotGuard {
        match &tenant {
            Some(t) => {
                *state.running.entry(t.clone()).or_default() += 1;
                state.total_running += 1;
            }
            None => state.exclusive = true,
        }
        SlotGuard {
            slots: Arc::clone(self),
            tenant,
        }
    }

    /// Undoes a grant whose waiter has gone, without dropping a guard (which would take the lock again).
    fn ungrant(state: &mut State, mut guard: SlotGuard) {
        match guard.tenant.take() {
            Some(t) => Self::count_down(state, &t),
            None => state.exclusive = false,
        }
        // Nothing left to release.
        std::mem::forget(guard);
    }

    fn count_down(state: &mut State, tenant: &TenantId) {
        if let Some(n) = state.running.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                state.running.remove(tenant);
            }
        }
        state.total_running -= 1;
    }

    fn release(self: &Arc<Self>, tenant: Option<TenantId>) {
        let mut state = self.lock();
        match &tenant {
            Some(t) => Self::count_down(&mut state, t),
            None => state.exclusive = false,
        }
        self.dispatch(&mut state);
    }

    /// Hands free slots to waiters: an exclusive waiter first in line once nothing runs; otherwise the
    /// waiting tenant with the fewest running queries (the longest waiting among equals). While an
    /// exclusive waiter is queued, no new query starts.
    fn dispatch(self: &Arc<Self>, state: &mut State) {
        loop {
            if state.exclusive {
                return;
            }
            if let Some(i) = state.waiting.iter().position(|w| w.tenant.is_none()) {
                if state.total_running > 0 {
                    return;
                }
                let waiter = state.waiting.remove(i).expect("found");
                let guard = self.grant(state, None);
                if let Err(Grant(Some(guard))) = waiter.grant.send(Grant(Some(guard))) {
                    Self::ungrant(state, guard);
                    continue;
                }
                return;
            }
            let pick = state
                .waiting
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.tenant.as_ref().map(|t| (i, t)))
                .filter(|(_, t)| self.may_run(state, t))
                .min_by_key(|(i, t)| (state.running.get(*t).copied().unwrap_or(0), *i))
                .map(|(i, _)| i);
            let Some(i) = pick else { return };
            let waiter = state.waiting.remove(i).expect("found");
            let guard = self.grant(state, waiter.tenant.clone());
            if let Err(Grant(Some(guard))) = waiter.grant.send(Grant(Some(guard))) {
                Self::ungrant(state, guard);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> TenantId {
        TenantId::new(id).unwrap()
    }

    fn slots(total: usize, per_tenant: usize, queued: usize, wait_ms: u64) -> Arc<Slots> {
        Slots::new(SlotRules {
            total,
            per_tenant,
            queued_per_tenant: queued,
            queue_timeout: Duration::from_millis(wait_ms),
        })
    }

    #[tokio::test]
    async fn one_tenant_cannot_take_every_slot() {
        let s = slots(4, 2, 4, 100);
        let a1 = s.acquire(&t("a")).await.unwrap();
        let _a2 = s.acquire(&t("a")).await.unwrap();
        // A third of tenant a waits and gives up; tenant b is served at once, twice.
        let e = s.acquire(&t("a")).await.unwrap_err();
        assert!(
            matches!(e, Error::Busy(ref m) if m.contains("max_concurrent = 4")),
            "{e:?}"
        );
        let started = std::time::Instant::now();
        let _b1 = s.acquire(&t("b")).await.unwrap();
        let _b2 = s.acquire(&t("b")).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(s.running(&t("a")), (4, 2));
        drop(a1);
        assert_eq!(s.running(&t("a")), (3, 1));
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_tenant_running_fewest() {
        let s = slots(2, 2, 4, 2000);
        let a1 = s.acquire(&t("a")).await.unwrap();
        let _a2 = s.acquire(&t("a")).await.unwrap();
        // a waits first, b second: b runs nothing, so b gets the slot.
        let a3 = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.acquire(&t("a")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b1 = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.acquire(&t("b")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a1);
        let b1 = b1.await.unwrap().unwrap();
        assert_eq!(s.running(&t("b")), (2, 1));
        assert!(!a3.is_finished());
        drop(b1);
        let _a3 = a3.await.unwrap().unwrap();
        assert_eq!(s.running(&t("a")), (2, 2));
    }

    #[tokio::test]
    async fn a_tenant_queue_is_bounded() {
        let s = slots(1, 1, 1, 2000);
        let _a = s.acquire(&t("a")).await.unwrap();
        let waiting = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.acquire(&t("a")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        let e = s.acquire(&t("a")).await.unwrap_err();
        assert!(
            matches!(e, Error::Busy(ref m) if m.contains("max_queued_per_tenant = 1")),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        waiting.abort();
    }

    #[tokio::test]
    async fn exclusive_waits_for_running_queries_and_holds_off_new_ones() {
        let s = slots(2, 2, 4, 2000);
        let a = s.acquire(&t("a")).await.unwrap();
        let ex = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.exclusive().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.acquire(&t("b")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!ex.is_finished() && !b.is_finished());
        drop(a);
        let ex = ex.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!b.is_finished());
        drop(ex);
        let _b = b.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_gives_its_grant_back() {
        let s = slots(1, 1, 4, 2000);
        let a = s.acquire(&t("a")).await.unwrap();
        let gone = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.acquire(&t("b")).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        drop(a);
        // The slot is free again, not lost to the aborted waiter.
        let _c = tokio::time::timeout(Duration::from_millis(500), s.acquire(&t("c")))
            .await
            .unwrap()
            .unwrap();
    }
}
