//! The race of two nodes for the same keys and audit entries, shared by `tests/race.rs` (a directory, an
//! object store in memory) and the e2e tests (S3 on moto).

use std::sync::{Arc, Barrier};

use tacet_ingest::{Dir, KeyStore};
use tacet_model::{Clock, ManualClock, TenantId};

/// Two nodes, each on the state `open` gives it (its own caches, and its own client for an object store),
/// race `rounds` times to make the same new tenant's day salt and subject key and to append to the audit
/// chain: they agree on every key, and the chain holds every entry once, in sequence.
pub fn race(open: impl Fn() -> Dir, rounds: usize) {
    let barrier = Arc::new(Barrier::new(2));
    let node = |n: u32| {
        let (root, barrier) = (open(), Arc::clone(&barrier));
        std::thread::spawn(move || {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_764_400_000_000));
            let keys = KeyStore::open(root.sub("keys"), clock).unwrap();
            let audit = tacet_audit::AuditLog::open(root.sub("audit")).unwrap();
            let mut got = Vec::with_capacity(rounds);
            for i in 0..rounds {
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
    assert_eq!(distinct.len(), rounds);
    // One chain: every entry once, in sequence, each linked to the one before (verify checks the links).
    let entries = tacet_audit::AuditLog::open(open().sub("audit"))
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(entries.len(), 2 * rounds);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.entry.seq, i as u64 + 1);
    }
    for n in ["node1", "node2"] {
        assert_eq!(
            entries.iter().filter(|e| e.entry.actor == n).count(),
            rounds
        );
    }
}
