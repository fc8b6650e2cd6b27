//! Two ingestion nodes sharing one key store (two `KeyStore`s and two `AuditLog`s on one shared state, each
//! with its own caches, as two processes have) race a thousand times to make the same tenant's day salt and
//! subject key, and to append to the audit chain: they always agree on one value, and the chain never forks.
//! Once on a directory, once on an object store (each node with its own client and runtime); the e2e tests
//! run the same race on S3 (moto).

use std::sync::Arc;

use tacet_ingest::Dir;
use tacet_state::Objects;

#[path = "support/race.rs"]
mod support;
use support::race;

const ROUNDS: usize = 1000;

#[test]
fn two_nodes_racing_for_the_same_keys_and_audit_entries_always_agree_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = Dir::from(dir.path());
    race(|| root.clone(), ROUNDS);
    // The chain as `tacet audit verify` reads the file.
    let entries = tacet_audit::verify(&dir.path().join("audit/audit.jsonl")).unwrap();
    assert_eq!(entries.len(), 2 * ROUNDS);
}

#[test]
fn two_nodes_racing_for_the_same_keys_and_audit_entries_always_agree_on_an_object_store() {
    let bucket = Arc::new(object_store::memory::InMemory::new());
    race(
        || {
            Dir::new(Arc::new(
                Objects::new(bucket.clone(), "_tacet/state", "mem://bucket").unwrap(),
            ))
        },
        ROUNDS,
    );
}
