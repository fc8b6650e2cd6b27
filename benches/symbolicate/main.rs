//! Criterion micro-benchmark of crash symbolication (`SourceMaps::symbolicate`, maps cached as they are
//! after the first crash of a release): an 8-frame Chrome stack whose 6 application frames are in a bundle
//! with a 20,000-mapping source map, against the per-event privacy step measured in the same run
//! (`Privacy::pseudonymise` of the same crash), so the figure is a ratio on this noisy machine.
//!
//! Run from the workspace root: `cargo bench --bench symbolicate`. Figures are in benches/README.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use tacet_ingest::SourceMaps;
use tacet_model::{RawEvent, TenantId, parse_event};
use tacet_privacy::{Keys, Privacy, RequestContext, Tally, TenantPolicy, parse_user_agent};

const NOW: i64 = 1_764_400_000_000;
const BUNDLE: &str = "https://cdn.shop.example/assets/app.3f9a2c1d.js";
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A one-line bundle of 200 modules of 100 lines each, one mapping every 10 columns.
fn big_map() -> Vec<u8> {
    let mut b = sourcemap::SourceMapBuilder::new(Some("app.3f9a2c1d.js"));
    for m in 0..200u32 {
        let name = format!("src/module{m}.js");
        let id = b.add_source(&name);
        let source: String = (0..100)
            .map(|l| format!("export function fn{m}_{l}(x) {{ return x + {l}; }}\n"))
            .collect();
        b.set_source_contents(id, Some(&source));
        for l in 0..100u32 {
            b.add(0, (m * 100 + l) * 10, l, 2, Some(&name), None, false);
        }
    }
    let mut out = Vec::new();
    b.into_sourcemap().to_writer(&mut out).unwrap();
    out
}

fn crash() -> RawEvent {
    let frame = |fun: &str, col: u32| format!("at {fun} ({BUNDLE}:1:{col})");
    parse_event(
        json!({"kind": "crash", "url": "https://shop.example/checkout", "error_type": "TypeError",
            "message": "Cannot read properties of undefined (reading 'total')", "release": "2026.11.29",
            "stack": [
                frame("a", 120_335), frame("b", 88_121), frame("c", 39_901), frame("d", 42_071),
                "at node_modules/react-dom/cjs/react-dom.production.min.js:200:5",
                frame("e", 410_011), frame("f", 2_345),
                "at HTMLButtonElement.dispatch (https://cdn.shop.example/assets/vendor.77e01b9a.js:10:1)"
            ]}),
        NOW,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let maps = SourceMaps::new(store);
    let tenant = TenantId::new("bench").unwrap();
    let map = big_map();
    eprintln!("source map: {} bytes", map.len());
    runtime
        .block_on(maps.put(&tenant, "2026.11.29", BUNDLE, map.into()))
        .unwrap();
    // Warm the cache, and check the frames are mapped.
    let mut warm = [crash()];
    assert_eq!(runtime.block_on(maps.symbolicate(&tenant, &mut warm)), 6);

    let privacy = Privacy::default();
    let policy = TenantPolicy::default();
    let keys = Keys {
        visitor_salt: [1; 32],
        subject_key: [2; 32],
    };
    let ua = parse_user_agent(UA);
    let ctx = RequestContext::new("203.0.113.7".parse().unwrap(), UA);

    let mut g = c.benchmark_group("crash");
    g.bench_function("symbolicate (6 of 8 frames mapped, cached map)", |b| {
        b.iter_batched(
            || [crash()],
            |mut events| runtime.block_on(maps.symbolicate(&tenant, black_box(&mut events))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("baseline: pseudonymise (the privacy step)", |b| {
        b.iter_batched(
            crash,
            |raw| {
                privacy.pseudonymise(
                    &tenant,
                    &policy,
                    &keys,
                    ctx,
                    &ua,
                    black_box(raw),
                    &mut Tally::default(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
