//! This node among others: the register it answers (`crate::Peers`), and asking the others to persist.

use super::{PEER_FLUSH_TIMEOUT, PEER_TICK, Pipeline};
use crate::Result;
use std::sync::Arc;
use tracing::warn;

impl Pipeline {
    /// Makes this pipeline answer other nodes' flush requests (at each flusher tick) and ask them in
    /// [`Pipeline::persist_everywhere`]. Once.
    pub fn set_peers(&self, peers: Arc<crate::Peers>) {
        let _ = self.peers.set(peers);
    }

    pub fn peers(&self) -> Option<&Arc<crate::Peers>> {
        self.peers.get()
    }

    /// [`Pipeline::persist_all`] here and on every other running ingestion node sharing the key store,
    /// not waiting for nodes that are down (nor longer than a while for slow ones): what an erasure needs,
    /// once its record is written (erasures.rs). Returns the nodes that did not answer.
    /// What the nodes `nodes` (that did not answer) last said they held unflushed.
    pub fn gaps(&self, nodes: &[u16]) -> Vec<crate::Gap> {
        self.peers.get().map_or_else(Vec::new, |p| p.gaps(nodes))
    }

    pub async fn persist_running(&self) -> Result<Vec<u16>> {
        self.persist_all().await?;
        match self.peers.get() {
            None => Ok(Vec::new()),
            Some(peers) => peers.flush_running(PEER_FLUSH_TIMEOUT).await,
        }
    }

    /// [`Pipeline::persist_all`] here and on every other ingestion node sharing the key store: what
    /// rectification and offboarding need before they change anything in the lake.
    pub async fn persist_everywhere(&self) -> Result<()> {
        self.persist_all().await?;
        match self.peers.get() {
            None => Ok(()),
            Some(peers) => peers.flush_everywhere(PEER_FLUSH_TIMEOUT).await,
        }
    }

    /// Another node asked every node to persist what it has (an erasure there): do it, then say so.
    pub(super) async fn answer_peers(&self) {
        let Some(peers) = self.peers.get() else {
            return;
        };
        let checkpoint = self.wal.checkpoint();
        let last = self.wal.last_seq();
        let unflushed = (last > checkpoint.persisted).then_some((checkpoint.persisted + 1, last));
        if let Err(e) = peers.heartbeat(PEER_TICK, unflushed) {
            warn!(error = %e, "cannot renew this node's heartbeat in the shared directory");
        }
        match peers.unanswered() {
            Ok(None) => {}
            Ok(Some(request)) => match self.persist_all().await {
                Ok(()) => {
                    if let Err(e) = peers.answer(request) {
                        warn!(error = %e, "cannot answer another node's flush request; retrying");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot persist for another node's flush request; retrying")
                }
            },
            Err(e) => warn!(error = %e, "cannot read the nodes' flush requests"),
        }
    }
}
