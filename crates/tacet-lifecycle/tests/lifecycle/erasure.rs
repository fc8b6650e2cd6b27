//! Erasure on a lake of a million events: the person's rows are gone from every byte of the data
//! directory, every other row is still there, and only the files that held them were rewritten.

use std::collections::BTreeSet;

use crate::fixture::{Env, START, all_files, lake_files, tenant};
use arrow::array::{Array, AsArray};
use tacet_model::Kind;

const ALICE: &str = "alice@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_one_person_from_a_million_events_rewrites_only_their_files() {
    let env = Env::new(START + 120 * crate::fixture::DAY);
    let t = tenant("acme");
    let other = tenant("globex");
    let alice_days: BTreeSet<i64> = [3, 17, 18, 42, 77, 99].into();
    let started = std::time::Instant::now();
    let n = env
        .generate(
            &t,
            &[Kind::Pageview, Kind::Event],
            100,
            5,
            1000,
            500,
            &[(ALICE, &alice_days)],
        )
        .await;
    // The same person at another tenant is another pseudonym, and stays.
    let m = env
        .generate(
            &other,
            &[Kind::Pageview],
            3,
            1,
            100,
            10,
            &[(ALICE, &[0, 1].into())],
        )
        .await;
    eprintln!("fixture: {n} + {m} events in {:?}", started.elapsed());
    assert!(n >= 1_000_000, "{n}");
    let alice_rows = 2 * alice_days.len() as i64;
    assert_eq!(env.count(&t, "SELECT COUNT(*) FROM events").await, n as i64);
    let alice = env.pseudonym(&t, ALICE);
    let before_files = lake_files(&env);
    // The files that hold her rows: the first file of each of her days, for both kinds.
    let holding: BTreeSet<String> = before_files
        .iter()
        .filter(|f| {
            alice_days.iter().any(|d| {
                let date = chrono::DateTime::from_timestamp_millis(START + d * crate::fixture::DAY)
                    .unwrap()
                    .date_naive();
                f.starts_with("events/tenant=acme/") && f.contains(&format!("date={date}/"))
            })
        })
        .filter(|f| {
            // The first file of the day has the lowest sequence number in its directory.
            let dir = f.rsplit_once('/').unwrap().0;
            before_files.iter().filter(|g| g.starts_with(dir)).min() == Some(*f)
        })
        .cloned()
        .collect();
    assert_eq!(holding.len(), 2 * alice_days.len());

    let started = std::time::Instant::now();
    let report = env
        .steward
        .erase(&t, ALICE, "test", &tacet_lifecycle::quiet)
        .await
        .unwrap();
    eprintln!("erasure: {report:?} in {:?}", started.elapsed());
    assert_eq!(report.rows, alice_rows as usize);
    assert_eq!(report.files_rewritten, holding.len());
    assert_eq!(report.files_deleted, 0);
    assert_eq!(report.files_scanned, 1000);
    let replaced: BTreeSet<String> = report.replaced.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        replaced, holding,
        "exactly the files that held her rows were replaced"
    );

    // Every other row is still there, hers are not; the other tenant is untouched.
    assert_eq!(
        env.count(&t, "SELECT COUNT(*) FROM events").await,
        n as i64 - alice_rows
    );
    assert_eq!(
        env.count(
            &t,
            &format!("SELECT COUNT(*) FROM events WHERE user_pseudonym = '{alice}'")
        )
        .await,
        0
    );
    assert_eq!(
        env.count(&other, "SELECT COUNT(*) FROM events").await,
        m as i64
    );

    // The file list: the same but for her files, each now its next generation.
    let after_files = lake_files(&env);
    let expected: BTreeSet<String> = before_files
        .iter()
        .map(|f| {
            if holding.contains(f) {
                f.replace(".parquet", ".g1.parquet")
            } else {
                f.clone()
            }
        })
        .collect();
    assert_eq!(after_files, expected);

    // No byte of the data directory holds her pseudonym or her user id: raw bytes of every file (lake,
    // log, keys, audit), and the decoded pseudonym column of every Parquet file (pages are compressed).
    for (path, bytes) in all_files(env.dir.path()) {
        for needle in [alice.as_bytes(), ALICE.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a trace of the erased person",
                path.display()
            );
        }
    }
    for (_, files) in env.lake().partitions(&t).await.unwrap() {
        for meta in files {
            for batch in env.lake().read(&meta).await.unwrap() {
                let col = batch
                    .column_by_name("user_pseudonym")
                    .unwrap()
                    .as_string::<i32>();
                assert!((0..col.len()).all(|i| col.is_null(i) || col.value(i) != alice));
            }
        }
    }
    // The audit log names the request, never the person.
    let audit = env.steward.audit().read().unwrap();
    let last = &audit.last().unwrap().entry;
    assert_eq!(last.action, "subject.erase");
    assert_eq!(last.detail["rows"], alice_rows);
}

/// An erasure that fails after writing its record (here the lake cannot be listed) says so, and leaves no
/// record behind: the person's pseudonyms are not kept, nor their later events dropped, for good.
#[tokio::test]
async fn a_failed_erasure_leaves_no_record_behind() {
    let env = Env::new(START);
    let t = tenant("acme");
    // The tenant has a subject key (people were identified), and the lake's events path is no directory.
    env.pseudonym(&t, "someone");
    let lake = env.dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let _ = std::fs::remove_dir_all(lake.join("events"));
    std::fs::write(lake.join("events"), b"not a directory").unwrap();
    let failed = env
        .steward
        .erase(&t, "alice@example.com", "test", &|_, _, _| {})
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        env.pipeline.keys().erasures(&t).unwrap().is_empty(),
        "the failed erasure's record is gone"
    );
    // The same request succeeds once the lake is readable, and leaves nothing either.
    std::fs::remove_file(lake.join("events")).unwrap();
    let report = env
        .steward
        .erase(&t, "alice@example.com", "test", &|_, _, _| {})
        .await
        .unwrap();
    assert_eq!(report.rows, 0);
    assert!(report.erasure_record.is_some());
    assert!(env.pipeline.keys().erasures(&t).unwrap().is_empty());
}
