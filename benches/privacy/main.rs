//! Criterion micro-benchmark of the whole per-event privacy step (`Privacy::pseudonymise`: bots, signals,
//! geography, visitor id, user pseudonym, URL and referrer, scrubbing of every text field, fingerprint),
//! with two baselines measured in the same run: validating the event's JSON (`parse_event`, which every
//! event pays anyway) and cloning the raw event (the floor of any step that copies its strings). The
//! `decode_*` rows time bytes to a validated event: the typed decoder the endpoint uses against the
//! `serde_json::Value` path it replaced.
//!
//! Run: `cargo bench --bench privacy`. Figures are in benches/README.md.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tacet_model::{RawEvent, TenantId, parse_event, parse_event_json};
use tacet_privacy::testdb::{Network, build};
use tacet_privacy::{
    GeoDb, Keys, Outcome, Privacy, RequestContext, Scrubber, Tally, TenantPolicy, parse_user_agent,
};

const NOW: i64 = 1_764_400_000_000;
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn pageview() -> Value {
    json!({"kind": "pageview", "url": "https://shop.example/products/red-shoes?page=2&utm_source=news&utm_medium=email",
        "referrer": "https://www.google.com/search?q=red+shoes", "user_id": "user-12345"})
}

/// The single beacon `benches/ingest` sends: a page view with UTM parameters, a search referrer, a user id
/// and seven properties, one a page title.
fn ingest_beacon() -> Value {
    json!({"kind": "pageview",
        "url": "https://shop.example.com/catalogue/category-7/product-42?utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale&ref=abc",
        "referrer": "https://www.google.com/search?q=winter+boots+waterproof+size+42",
        "user_id": "customer-00012345",
        "props": {"plan": "pro", "experiment": "checkout-v2", "variant": "b", "cart_items": "3",
            "screen": "1920x1080", "lang": "en-GB",
            "title": "Waterproof winter boots for hiking - Shop Example - free delivery over 50"},
        "release": "web-2026.11.3"})
}

fn custom_event() -> Value {
    json!({"kind": "event", "name": "add_to_cart", "url": "https://shop.example/cart",
        "props": {"plan": "pro", "sku": "SKU-0042", "price": 19.99, "button": "primary", "session_token": "abc123"}})
}

fn crash() -> Value {
    json!({"kind": "crash", "url": "https://shop.example/checkout", "error_type": "TypeError",
    "message": "Cannot read properties of undefined (reading 'total') for order 4711 at 2026-11-29T10:15:30Z",
    "release": "2026.11.29",
    "stack": [
        "at renderTotal (https://cdn.shop.example/assets/app.3f9a2c1d.js:120:33)",
        "at Cart.render (https://cdn.shop.example/assets/app.3f9a2c1d.js:88:12)",
        "at updateComponent (https://cdn.shop.example/assets/vendor.77e01b9a.js:3990:14)",
        "at node_modules/react-dom/cjs/react-dom.production.min.js:200:5",
        "at commitRoot (https://cdn.shop.example/assets/vendor.77e01b9a.js:4100:2)",
        "at performWork (https://cdn.shop.example/assets/vendor.77e01b9a.js:4200:9)",
        "at onClick (https://cdn.shop.example/assets/app.3f9a2c1d.js:42:7)",
        "at HTMLButtonElement.dispatch (https://cdn.shop.example/assets/vendor.77e01b9a.js:10:1)"
    ]})
}

fn crash_with_secrets() -> Value {
    json!({"kind": "crash", "url": "https://shop.example/checkout", "error_type": "PaymentError",
        "message": "card 4111 1111 1111 1111 declined for alice@example.com from 203.0.113.7; Authorization: Bearer abc.def-123456789; password=hunter2",
        "stack": ["at pay (/home/alice/app/pay.js:3:1)", "at main (app.js:1:1)"]})
}

fn raw(v: Value) -> RawEvent {
    parse_event(v, NOW).unwrap()
}

fn bench(c: &mut Criterion) {
    let geo = GeoDb::from_bytes(build(&[Network {
        net: Ipv4Addr::new(203, 0, 113, 0),
        prefix: 24,
        country: "GB",
        region: "ENG",
        city: "London",
    }]))
    .unwrap();
    let privacy = Privacy::new(Some(geo));
    let tenant = TenantId::new("bench").unwrap();
    let keys = Keys {
        visitor_salt: [7; 32],
        subject_key: [9; 32],
    };
    let policy: TenantPolicy = toml::from_str(
        "geo = \"city\"\nip = \"truncate\"\nquery_params = [\"page\"]\nscrub = [{ name = \"order\", pattern = 'ORD-\\d{6}' }]",
    )
    .unwrap();
    let ua = parse_user_agent(UA);
    let ctx = RequestContext::new("203.0.113.7".parse().unwrap(), UA);
    let dnt = RequestContext { dnt: true, ..ctx };

    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(1));
    for (name, event) in [
        ("pageview", pageview()),
        ("ingest_beacon", ingest_beacon()),
        ("custom_event", custom_event()),
        ("crash_8_frames", crash()),
        ("crash_with_secrets", crash_with_secrets()),
    ] {
        let template = raw(event.clone());
        g.bench_function(format!("baseline_clone_raw/{name}"), |b| {
            b.iter(|| black_box(template.clone()))
        });
        // What the endpoint pays to turn an event's bytes into a RawEvent: the typed decoder
        // (`parse_event_json`) against the path it replaced (a `serde_json::Value`, then `parse_event`).
        let bytes = serde_json::to_vec(&event).unwrap();
        g.bench_function(format!("decode_via_value/{name}"), |b| {
            b.iter(|| {
                let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
                black_box(parse_event(v, NOW).unwrap())
            })
        });
        g.bench_function(format!("decode_typed/{name}"), |b| {
            b.iter(|| black_box(parse_event_json(black_box(&bytes), NOW).unwrap()))
        });
        g.bench_function(format!("baseline_parse_event/{name}"), |b| {
            b.iter_batched(
                || event.clone(),
                |v| black_box(parse_event(v, NOW).unwrap()),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("privacy/{name}"), |b| {
            b.iter_batched(
                || template.clone(),
                |r| {
                    let mut tally = Tally::default();
                    let out =
                        privacy.pseudonymise(&tenant, &policy, &keys, ctx, &ua, r, &mut tally);
                    assert!(matches!(out, Outcome::Keep(_)));
                    black_box((out, tally))
                },
                BatchSize::SmallInput,
            )
        });
    }
    let template = raw(pageview());
    g.bench_function("privacy/pageview_dnt_anonymised", |b| {
        b.iter_batched(
            || template.clone(),
            |r| {
                black_box(privacy.pseudonymise(
                    &tenant,
                    &policy,
                    &keys,
                    dnt,
                    &ua,
                    r,
                    &mut Tally::default(),
                ))
            },
            BatchSize::SmallInput,
        )
    });
    // A batch of 100 events in one request: what depends only on the request is computed once.
    let batch: Vec<RawEvent> = (0..100)
        .map(|i| match i % 10 {
            0 => raw(crash()),
            1..=3 => raw(custom_event()),
            _ => raw(pageview()),
        })
        .collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("baseline_clone_raw/batch_100_mixed", |b| {
        b.iter(|| black_box(batch.clone()))
    });
    g.bench_function("privacy/batch_100_mixed", |b| {
        b.iter_batched(
            || batch.clone(),
            |rs| {
                let mut tally = Tally::default();
                black_box(
                    privacy.pseudonymise_all(&tenant, &policy, &keys, ctx, &ua, rs, &mut tally),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The user-agent step alone: woothee plus the overlay of families it lacks (useragent.rs).
    let mut g = c.benchmark_group("user_agent");
    for (name, agent) in [
        (
            "chrome_desktop",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ),
        (
            "safari_iphone",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        ),
        (
            "facebook_in_app",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.48.118;FBBV/540203620;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_GB;FBOP/5]",
        ),
        (
            "samsung_internet",
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(parse_user_agent(black_box(agent))))
        });
    }
    g.finish();

    // URL cleaning alone, for the ingest bench's page URL: three campaign parameters kept, one dropped.
    let mut g = c.benchmark_group("url");
    let url = ingest_beacon()["url"].as_str().unwrap().to_owned();
    g.bench_function("clean_url/ingest_beacon", |b| {
        b.iter(|| black_box(tacet_privacy::clean_url(black_box(&url), &[])))
    });
    let long = "https://shop.example/search?q=winter+boots&sort=price&page=3&sessionid=6f2d0c1e9a8b7c6d5e4f3a2b1c0d9e8f&fbclid=IwAR2x%2F3kLmNoPqRsTuVwXyZ&gclid=Cj0KCQiA%2Dexample&utm_source=ads";
    g.bench_function("clean_url/long_tracking_query", |b| {
        b.iter(|| black_box(tacet_privacy::clean_url(black_box(long), &[])))
    });
    g.finish();

    let mut g = c.benchmark_group("scrub");
    let scrubber = Scrubber::default();
    for (name, text) in [
        (
            "ordinary_message",
            "Cannot read properties of undefined (reading 'total') for order 4711 at 2026-11-29T10:15:30Z",
        ),
        (
            "ordinary_frame",
            "at renderTotal (https://cdn.shop.example/assets/app.3f9a2c1d.js:120:33)",
        ),
        (
            "secret_message",
            "card 4111 1111 1111 1111 declined for alice@example.com from 203.0.113.7; password=hunter2",
        ),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(scrubber.text(black_box(text), &mut Tally::default())))
        });
    }
    // The same ordinary message with an event's known values (user id, client IP) and the phone rule on.
    let known: Vec<tacet_privacy::Known> = [
        tacet_privacy::Known::user("user-7f3a9c2e"),
        tacet_privacy::Known::ip("203.0.113.7"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let full = Scrubber::default().with_phone(true).with_known(&known);
    let text = "Cannot read properties of undefined (reading 'total') for order 4711 at 2026-11-29T10:15:30Z";
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("ordinary_message_known_values_and_phone", |b| {
        b.iter(|| black_box(full.text(black_box(text), &mut Tally::default())))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
