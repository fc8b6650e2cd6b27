//! Two ingestion nodes sharing one key store (two `KeyStore`s and two `AuditLog`s on one shared state, each
//! with its own caches, as two processes have) race a thousand times to make the same tenant's day salt and
//! subject key, and to append to the audit chain: they always agree on one value, and the chain never forks.
//! Once on a directory, once on an object store (each node with its own client and runtime); the e2e tests
//! run the same race on S3 (moto).

use std::sync::{Arc, Barrier};

use tacet_ingest::{Dir, KeyStore};
use tacet_model::{Clock, ManualClock, TenantId};
use tacet_state::Objects;

const ROUNDS: usize = 1000;

#[test]
fn two_nodes_racing_for_the_same_keys_and_audit_entries_always_agree_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = Dir::from(dir.path());
    race(|| root.clone());
    // The chain as `tacet audit verify` reads the file.
    let entries = tacet_audit::verify(&dir.path().join("audit/audit.jsonl")).unwrap();
    assert_eq!(entries.len(), 2 * ROUNDS);
}

#[test]
fn two_nodes_racing_for_the_same_keys_and_audit_entries_always_agree_on_an_object_store() {
    let bucket = Arc::new(object_store::memory::InMemory::new());
    race(|| {
        Dir::new(Arc::new(
            Objects::new(bucket.clone(), "_tacet/state", "mem://bucket").unwrap(),
        ))
    });
}

/// Two nodes, each on the state `open` gives it, race [`ROUNDS`] times.
pub fn race(open: impl Fn() -> Dir) {
    let barrier = Arc::new(Barrier::new(2));
    let node = |n: u32| {
        let (root, barrier) = (open(), Arc::clone(&barrier));
        std::thread::spawn(move || {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
            let keys = KeyStore::open(root.sub("keys"), clock).unwrap();
            let audit = tacet_audit::AuditLog::open(root.sub("audit")).unwrap();
            let mut got = Vec::with_capacity(ROUNDS);
            for i in 0..ROUNDS {
                let tenant = TenantId::new(format!("t{i}")).unwrap();
                // Both start each round together: the first key file made wins, the other reads it.
                barrier.wait();
                let k = keys.keys_for(&tenant).unwrap();
                audit
                    .append(
                        &format!("node{n}"),
                        "race",
                        Some(tenant.as_str()),
                        serde_json::json!({ "round": i }),
                    )
                    .unwrap();
                got.push((k.visitor_salt, k.subject_key));
            }
            got
        })
    };
    let (one, two) = (node(1), node(2));
    let (one, two) = (one.join().unwrap(), two.join().unwrap());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a, b, "round {i}: the nodes disagree on a key");
    }
    // A thousand different tenants, a thousand different keys.
    let distinct: std::collections::HashSet<_> = one.iter().map(|(salt, _)| salt).collect();
    assert_eq!(distinct.len(), ROUNDS);
    // One chain: every entry once, in sequence, each linked to the one before (verify checks the links).
    let entries = tacet_audit::AuditLog::open(open().sub("audit"))
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(entries.len(), 2 * ROUNDS);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.entry.seq, i as u64 + 1);
    }
    for n in ["node1", "node2"] {
        assert_eq!(
            entries.iter().filter(|e| e.entry.actor == n).count(),
            ROUNDS
        );
    }
}
