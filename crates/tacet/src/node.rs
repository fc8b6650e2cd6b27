//! `tacet node drain`: a node removed for good hands over what it holds and leaves.
//!
//! On a stopped node's data directory: its write-ahead log is replayed (erasure records it missed dropping
//! the events of erased people first), written to the lake and emptied; the node leaves the register in
//! `<shared_dir>/nodes/` (so no erasure or offboarding names it again, and erasure records waiting for it
//! are deleted) and gives up its claim on the lake (`_tacet/nodes/<id>.json`), so its id can be used again.
//! Afterwards its data directory holds nothing the lake needs.

use std::sync::Arc;

use anyhow::{Context, bail};
use tacet_model::SystemClock;
use tacet_privacy::Privacy;

use crate::config::Config;

pub async fn drain(config: &Config) -> anyhow::Result<()> {
    let Some(node) = config.node_id else {
        bail!(
            "tacet node drain is for one of several nodes, which each have a node_id (TACET_NODE_ID); a \
             single node needs no draining: stop it (a clean stop writes everything to the lake)"
        );
    };
    let _lock = crate::lifecycle::lock_data_dir(config)?;
    let state = config.state()?;
    let parts =
        crate::lifecycle::open_parts(config, &state, Arc::new(SystemClock), Privacy::default())?;
    let pipeline = parts.pipeline;
    crate::claim::keystore(config, pipeline.lake().store(), pipeline.keys()).await?;
    let peers = Arc::new(tacet_ingest::Peers::observe(state.sub("nodes"), node)?);
    pipeline.set_peers(Arc::clone(&peers));
    let recovered = pipeline.recover(parts.replay);
    eprintln!(
        "node {node}: the write-ahead log held {} events in {} records; {} of them of people erased meanwhile, dropped",
        recovered.events, recovered.records, recovered.erased
    );
    let written = recovered.events - recovered.erased;
    // The flush inside refuses to run unless the erasure records were applied (and marked done for this
    // node) first.
    pipeline.persist_all().await.with_context(|| {
        format!(
            "node {node}: the log's events could not all be written to the lake; nothing was deregistered. \
             Fix the storage (the error above says what failed) and run tacet node drain again"
        )
    })?;
    peers.leave_for_good()?;
    let released = crate::claim::release_node(config, pipeline.lake().store()).await?;
    println!(
        "node {node} drained: {written} events written to the lake, its write-ahead log emptied, removed from \
         the node register{}. Its data directory {} holds nothing the lake needs and can be deleted.",
        if released {
            " and from the lake's claims (the id can be used again)"
        } else {
            ""
        },
        config.data_dir.display()
    );
    Ok(())
}
