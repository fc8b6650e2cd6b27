//! The erasure benchmark: erasing one person from a tenant's lake against rewriting the whole tenant (what
//! erasure without bloom filters and file-level replacement would cost), in the same run on the same lake.
//!
//! ```sh
//! cargo bench --bench lifecycle            # 1M events, 1000 files
//! TACET_BENCH_EVENTS=5000000 cargo bench --bench lifecycle
//! ```
//!
//! Two people are erased: one with events on 6 days (12 of the files) and one on every 4th day (50
//! files), one event per file, inside files of the other visitors' events. The baseline reads every file of the tenant, drops nothing-but-the-person's rows and writes every
//! file again (a full rewrite). Prints each time and the ratio erasure / full rewrite.

#[path = "../../crates/tacet-lifecycle/tests/fixture/mod.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::time::Instant;

use fixture::{DAY, Env, START, tenant};
use tacet_lake::{FileName, ParquetFilePath};
use tacet_model::Kind;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let events: usize = std::env::var("TACET_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_file = events / 1000;
    let env = Env::new(START + 120 * DAY);
    let t = tenant("bench");
    let few: BTreeSet<i64> = [3, 17, 18, 42, 77, 99].into();
    let many: BTreeSet<i64> = (0..100).step_by(4).collect();
    let started = Instant::now();
    let n = env
        .generate(
            &t,
            &[Kind::Pageview, Kind::Event],
            100,
            5,
            per_file,
            500,
            &[("few@example.com", &few), ("many@example.com", &many)],
        )
        .await;
    let files = env.lake().list_tenant_files(&t).await.unwrap();
    let bytes: u64 = files.iter().map(|m| m.size).sum();
    println!(
        "lake: {n} events in {} files, {:.1} MB, generated in {:.1}s",
        files.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let full = full_rewrite(&env, &t).await;
    println!("full rewrite of the tenant (baseline): {:.3}s", full);
    for who in ["few@example.com", "many@example.com"] {
        let started = Instant::now();
        let r = env
            .steward
            .erase(&t, who, "bench", &tacet_lifecycle::quiet)
            .await
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "erase {who:<18} {:.3}s: {} rows, {} of {} files rewritten ({} read after bloom filters); ratio to full rewrite {:.3}",
            secs,
            r.rows,
            r.files_rewritten + r.files_deleted,
            r.files_scanned,
            r.files_read,
            secs / full
        );
    }
}

/// Reads and rewrites every visible file of the tenant as its next generation, then deletes the old ones:
/// the cost of an erasure that cannot tell which files hold the person.
async fn full_rewrite(env: &Env, t: &tacet_model::TenantId) -> f64 {
    let started = Instant::now();
    let lake = env.lake();
    let mut old = Vec::new();
    for (key, files) in lake.partitions(t).await.unwrap() {
        for meta in files {
            let batches = lake.read(&meta).await.unwrap();
            let name = FileName::parse(&meta.location).unwrap().next_generation();
            let path = ParquetFilePath::in_partition(&key, name);
            lake.replace(&[], Some((&path, &batches))).await.unwrap();
            old.push(meta.location);
        }
    }
    lake.delete(&old).await.unwrap();
    started.elapsed().as_secs_f64()
}
