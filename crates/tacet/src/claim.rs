//! What a lake remembers of who writes it, so that a node that would break it refuses to start.
//!
//! - `_tacet/keystore.json`: the identity of the key store (`KeyStore::id`) whose salts and subject keys
//!   made the pseudonyms in the lake. A node with another key store would give the same person another
//!   pseudonym, and an erasure through one node would not find what the other wrote. (A tenant pinned to
//!   its own store gets the same claim at `_tacet/tenant=<id>/keystore.json`, which routes there.)
//! - `_tacet/nodes/<node id, or "single">.json`: the data directory (its `instance.id`) that flushes as that
//!   node. Two processes flushing as the same node overwrite each other's files; several nodes must each
//!   have a `node_id`, and a node without one must be alone.
//!
//! Each claim is made create-only (a conditional put), so two nodes starting at once cannot both win.

use std::sync::Arc;

use anyhow::{Context, bail};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::config::Config;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    /// The identity claimed: a key store's or a data directory's.
    id: String,
    /// Where the claimant found it, as that process saw the path (for the message).
    dir: String,
    /// When it was claimed (RFC 3339).
    since: String,
}

/// Claims `path` for `claim`, or returns the claim already there; `true` when this call made it.
async fn claim(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    mine: &Claim,
) -> anyhow::Result<(Claim, bool)> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let bytes = serde_json::to_vec_pretty(mine)?;
    match store.put_opts(path, bytes.into(), opts).await {
        Ok(_) => return Ok((mine.clone(), true)),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot write {path} in the lake")),
    }
    let held = read(store, path).await?.with_context(|| {
        format!("{path} in the lake was there a moment ago and is gone: start again")
    })?;
    Ok((held, false))
}

/// The claim at `path`, if there is one.
async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> anyhow::Result<Option<Claim>> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {path} in the lake")),
    };
    let bytes = got
        .bytes()
        .await
        .with_context(|| format!("cannot read {path} in the lake"))?;
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!("{path} in the lake is not a claim Tacet wrote; remove it if you know where it came from")
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Refuses a key store other than the one the lake's pseudonyms come from.
pub async fn keystore(
    config: &Config,
    store: &Arc<dyn ObjectStore>,
    keys: &tacet_ingest::KeyStore,
) -> anyhow::Result<()> {
    let mine = Claim {
        id: keys.id()?,
        dir: keys.dir().place(""),
        since: now(),
    };
    let mut paths = vec![Path::from("_tacet/keystore.json")];
    for t in config.tenant.iter().filter(|t| t.storage.is_some()) {
        paths.push(Path::from(format!("_tacet/tenant={}/keystore.json", t.id)));
    }
    for path in paths {
        let (held, _) = claim(store, &path, &mine).await?;
        if held.id != mine.id {
            bail!(
                "this lake holds pseudonyms made with another key store ({}, claimed {}; the lake's {path}), \
                 not this node's ({}). Nodes that write one lake must share one key store, or the same \
                 person gets two pseudonyms and an erasure misses what the other node wrote: point \
                 shared_dir (TACET_SHARED_DIR) at the directory the other nodes use. If that key store is \
                 lost for good, its pseudonyms can no longer be matched to anyone; remove {path} from the \
                 lake to let this key store take over.",
                held.dir,
                held.since,
                mine.dir
            );
        }
    }
    Ok(())
}

/// Refuses to start on a lake this node cannot write: a probe object per store (the default one and each
/// pinned tenant's) is written and removed, so a bucket that is missing, read-only to these credentials or
/// unreachable stops the server with the reason instead of failing every flush later.
pub async fn writable(config: &Config, store: &Arc<dyn ObjectStore>) -> anyhow::Result<()> {
    let name = node_name(config.node_id);
    let mut probes = vec![(
        Path::from(format!("_tacet/probe/{name}.json")),
        config.storage.describe(&config.data_dir),
    )];
    for t in config.tenant.iter() {
        if let Some(s) = &t.storage {
            probes.push((
                Path::from(format!("_tacet/tenant={}/probe/{name}.json", t.id)),
                format!("{} (tenant {:?})", s.describe(&config.data_dir), t.id),
            ));
        }
    }
    for (path, describe) in probes {
        let written = store
            .put(
                &path,
                serde_json::to_vec(&serde_json::json!({"since": now()}))?.into(),
            )
            .await;
        let removed = match written {
            Ok(_) => store.delete(&path).await,
            Err(e) => Err(e),
        };
        removed.with_context(|| {
            format!(
                "cannot write to the lake at {describe}: check that the bucket exists, the endpoint, the \
                 credentials (AWS_ACCESS_KEY_ID, ...) and that they may put and delete objects"
            )
        })?;
    }
    Ok(())
}

/// The name a node's claim goes under.
fn node_name(node: Option<u16>) -> String {
    node.map_or_else(|| "single".to_owned(), |n| n.to_string())
}

/// Claims this data directory's place as its node (a server, which flushes); refuses a second process
/// flushing as the same node, and a node without `node_id` beside others.
pub async fn node(config: &Config, store: &Arc<dyn ObjectStore>) -> anyhow::Result<()> {
    let mine = Claim {
        id: tacet_ingest::identity(&tacet_ingest::Dir::from(&config.data_dir), "instance.id")?,
        dir: config.data_dir.display().to_string(),
        since: now(),
    };
    let name = node_name(config.node_id);
    let path = Path::from(format!("_tacet/nodes/{name}.json"));
    let (held, created) = claim(store, &path, &mine).await?;
    let what = match config.node_id {
        Some(n) => format!("node {n}"),
        None => "a node without node_id".to_owned(),
    };
    if held.id != mine.id {
        bail!(
            "the lake is already written by {what} from another data directory ({}, since {}). Two \
             processes flushing as one node overwrite each other's files: give every node its own node_id \
             (TACET_NODE_ID). If that node is gone for good (with any events its write-ahead log still \
             held), remove {path} from the lake to let this data directory take its place.",
            held.dir,
            held.since
        );
    }
    let checked = beside_others(config, store, &name, &mine).await;
    if checked.is_err() && created {
        // Refused: leave no claim behind that would stand in the way of the nodes already there.
        let _ = store.delete(&path).await;
    }
    checked
}

/// Refuses a node without `node_id` beside others, and a numbered node beside one without.
async fn beside_others(
    config: &Config,
    store: &Arc<dyn ObjectStore>,
    name: &str,
    mine: &Claim,
) -> anyhow::Result<()> {
    let others: Vec<String> = store
        .list_with_delimiter(Some(&Path::from("_tacet/nodes")))
        .await
        .context("cannot list the lake's nodes (_tacet/nodes)")?
        .objects
        .into_iter()
        .filter_map(|o| {
            o.location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .filter(|n| n != name)
        .collect();
    let single = others.iter().any(|n| n == "single");
    if config.node_id.is_none() && !others.is_empty() {
        bail!(
            "the lake is written by nodes {} and this node has no node_id: several nodes writing one lake \
             each need their own (TACET_NODE_ID) and a shared key store (shared_dir)",
            others.join(", ")
        );
    }
    if single {
        let path = Path::from("_tacet/nodes/single.json");
        let Some(held) = read(store, &path).await? else {
            return Ok(());
        };
        if held.id == mine.id {
            // This data directory was the single node and now has a node_id: it takes its own claim.
            store
                .delete(&path)
                .await
                .context("cannot remove _tacet/nodes/single.json from the lake")?;
            return Ok(());
        }
        bail!(
            "the lake is written by a node without node_id (_tacet/nodes/single.json): several nodes writing \
             one lake each need their own node_id. Give that node one too, or, if it is gone for good, \
             remove _tacet/nodes/single.json from the lake"
        );
    }
    Ok(())
}

/// Gives up this data directory's claim as its node (`tacet node drain`), so another data directory may
/// take the id; `false` when the claim is not this directory's (left alone) or there is none.
pub async fn release_node(config: &Config, store: &Arc<dyn ObjectStore>) -> anyhow::Result<bool> {
    let mine = tacet_ingest::identity(&tacet_ingest::Dir::from(&config.data_dir), "instance.id")?;
    let path = Path::from(format!("_tacet/nodes/{}.json", node_name(config.node_id)));
    match read(store, &path).await? {
        Some(held) if held.id == mine => {
            store
                .delete(&path)
                .await
                .with_context(|| format!("cannot remove {path} from the lake"))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
