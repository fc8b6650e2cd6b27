//! `tacet node drain`: a node removed for good hands over what it holds and leaves. `tacet node
//! move-state`: the shared state moves from a directory into the lake's bucket.
//!
//! On a stopped node's data directory: its write-ahead log is replayed (erasure records it missed dropping
//! the events of erased people first), written to the lake and emptied; the node leaves the register in
//! `nodes/` of the shared state (so no erasure or offboarding names it again, and erasure records waiting for it
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

/// `tacet node move-state`: the shared state of the directory (`shared_dir`, or `data_dir`) copied into the
/// lake's bucket (`_tacet/state/`, sealed), with every node stopped, so that they can run with
/// `shared_state = "lake"`. Creates only: what is already there with the same bytes is left, anything else
/// there stops the copy by name.
pub fn move_state(config: &Config) -> anyhow::Result<()> {
    use crate::config::SharedState;
    if config.shared_state == SharedState::Lake {
        bail!(
            "shared_state = \"lake\" already: the state is in the bucket. Run this with the configuration the \
             nodes used before (shared_state = \"dir\", with their shared_dir if they had one)"
        );
    }
    if config.storage.backend != crate::storage::Backend::S3 {
        bail!("the lake is on local disk: the shared state stays a directory (shared_dir) there");
    }
    let _lock = crate::lifecycle::lock_data_dir(config)?;
    let from = config.state()?;
    if !from.sub("keys").exists("store.id")? {
        bail!(
            "no key store at {}: nothing to move (a new deployment can start with shared_state = \"lake\")",
            from.sub("keys").place("")
        );
    }
    let running = tacet_ingest::Peers::observe(from.sub("nodes"), u16::MAX)?.registered()?;
    if !running.is_empty() {
        bail!(
            "node(s) {running:?} are registered in {}: stop every node first (a clean stop leaves the \
             register; a crashed one: start it once and stop it, or `tacet node drain` it)",
            from.sub("nodes").place("")
        );
    }
    let mut lake = config.clone();
    lake.shared_state = SharedState::Lake;
    lake.shared_dir = None;
    let to = lake.state()?;
    let mut total = tacet_state::Copied::default();
    for part in ["keys", "audit", "triage", "sessions", "alerts"] {
        let copied = tacet_state::copy_tree(&from.sub(part), &to.sub(part), &mut |name| {
            eprintln!("  {part}/{name}")
        })
        .with_context(|| {
            format!("moving {part}/ stopped; what was copied stays, and running this again goes on")
        })?;
        total.objects += copied.objects;
        total.logs += copied.logs;
        total.unchanged += copied.unchanged;
    }
    println!(
        "moved the shared state from {} to {}: {} objects written ({} of them logs), {} already there. \
         Now set shared_state = \"lake\" (TACET_SHARED_STATE=lake) and the same TACET_STATE_KEY (or master \
         key) on every node, remove shared_dir, and start them; the directory is no longer read.",
        from.place(""),
        to.place(""),
        total.objects,
        total.logs,
        total.unchanged
    );
    Ok(())
}
