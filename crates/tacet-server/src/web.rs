//! What web pages load: the tracker script (`/t.js`), the no-JavaScript pixel (`/v1/pixel.gif`), and the
//! demo page (`/demo`, only with the embedded demo configuration).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;
use tacet_model::parse_event;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::{header_str, request_context};

/// The tracker, as served. Its size (gzipped) and integrity hash are checked by tests.
pub const TRACKER: &str = include_str!("../assets/t.js");
const DEMO: &str = include_str!("../assets/demo.html");

/// Released versions of the tracker other than the current one, kept so that a page whose snippet pins
/// one (`/t.js?v=<version>` with its integrity hash) keeps loading it after an upgrade. Listed in
/// `assets/tracker/VERSIONS`, which says how to add one; a test keeps the three in step.
pub const ARCHIVED: &[&str] = &[];

/// The version manifest (`assets/tracker/VERSIONS`).
pub const VERSIONS: &str = include_str!("../assets/tracker/VERSIONS");

struct Asset {
    script: &'static str,
    gzipped: Vec<u8>,
    etag: String,
}

impl Asset {
    fn new(script: &'static str) -> Self {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(script.as_bytes()).expect("gzip into memory");
        let gzipped = gz.finish().expect("gzip into memory");
        Asset {
            script,
            gzipped,
            etag: format!("\"{}\"", tracker_version_of(script)),
        }
    }
}

/// The current tracker, then the archived ones, by version.
static TRACKER_ASSETS: LazyLock<Vec<(String, Asset)>> = LazyLock::new(|| {
    std::iter::once(TRACKER)
        .chain(ARCHIVED.iter().copied())
        .map(|s| (tracker_version_of(s), Asset::new(s)))
        .collect()
});

/// A tracker's version: the first 16 hex characters of the SHA-256 of its text.
pub fn tracker_version_of(script: &str) -> String {
    hex::encode(&sha2::Sha256::digest(script.as_bytes())[..8])
}

/// The current tracker's version, for `/t.js?v=…`.
pub fn tracker_version() -> String {
    tracker_version_of(TRACKER)
}

/// The tracker's Subresource Integrity value (`sha384-…`), as the README publishes it.
pub fn tracker_integrity() -> String {
    integrity_of(TRACKER)
}

/// The Subresource Integrity value of a script.
pub fn integrity_of(script: &str) -> String {
    format!(
        "sha384-{}",
        base64(&sha2::Sha384::digest(script.as_bytes()))
    )
}

/// The snippet a page embeds: the current version, pinned, with its integrity hash. `base` is the server's
/// public address (`https://tacet.example.com`).
pub fn tracker_snippet(base: &str, ingest_key: &str) -> String {
    format!(
        "<script defer src=\"{base}/t.js?v={}\" data-key=\"{ingest_key}\"\n        integrity=\"{}\" crossorigin=\"anonymous\"></script>",
        tracker_version(),
        tracker_integrity()
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /t.js`: the current tracker, cached for five minutes (an upgrade reaches pages soon; load it
/// without `integrity`), revalidated by ETag. `GET /t.js?v=<version>`: that version, current or archived,
/// cached for a year as immutable (what the README's snippet pins, with its integrity hash). Gzipped when
/// the client accepts it.
pub async fn tracker(Query(query): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let assets = &*TRACKER_ASSETS;
    let (asset, cache) = match query.get("v") {
        None => (&assets[0].1, "public, max-age=300"),
        Some(v) => match assets.iter().find(|(version, _)| version == v) {
            Some((_, asset)) => (asset, "public, max-age=31536000, immutable"),
            None => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no tracker version {v:?} on this server; the current one is /t.js?v={}",
                        assets[0].0
                    ),
                )
                .into_response();
            }
        },
    };
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == asset.etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"))
    {
        let mut r = asset.gzipped.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.script.into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&asset.etag).expect("hex is a valid header value"),
    );
    // Pages load it with integrity= and crossorigin=, which needs CORS.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// A transparent 1x1 GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `GET /v1/pixel.gif?key=…&url=…&ref=…`: a page view without JavaScript. `url` defaults to the
/// `Referer` header (the page the image is on). Answers the GIF when the view was taken (stored or dropped
/// by the tenant's policy), and a JSON error otherwise, so a misconfigured pixel shows up in curl.
pub async fn pixel(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match pixel_view(&state, peer, &query, &headers).await {
        Ok(()) => (
            [
                (header::CONTENT_TYPE, "image/gif"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            GIF,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pixel_view(
    state: &AppState,
    peer: SocketAddr,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let key = query
        .get("key")
        .ok_or_else(|| ApiError::unauthorized("missing ingest key: add ?key=<ingest key>"))?;
    let tenant = state
        .tenants
        .by_ingest_key(key)
        .ok_or_else(|| ApiError::unauthorized(state.tenants.not_an_ingest_key(key)))?;
    // The same admission as POST /v1/events: origins (from the Referer an image request sends), request
    // limits, readiness; then the event quota.
    let ctx = request_context(state, peer, headers);
    crate::admission::admit(state, tenant, key, headers, ctx.ip)?;
    let url = query
        .get("url")
        .map(String::as_str)
        .or(header_str(headers, header::REFERER))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "url: required (?url=<page URL>), or send a Referer header",
            )
        })?;
    let mut event = serde_json::json!({"kind": "pageview", "url": url});
    if let Some(r) = query.get("ref").filter(|r| !r.is_empty()) {
        event["referrer"] = r.clone().into();
    }
    let now = state.pipeline.clock().now_millis();
    let raw = parse_event(event, now)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !tenant.policy.accepts(raw.kind) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this tenant does not accept kind \"pageview\" (its policy's kinds setting)",
        ));
    }
    crate::admission::admit_events(state, tenant, 1)?;
    state
        .pipeline
        .accept(&tenant.id, &tenant.policy, ctx, vec![raw])
        .await?;
    Ok(())
}

/// `GET /demo`: a page that loads the tracker for the demo tenant, with buttons for each kind of event.
pub async fn demo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(demo) = &state.demo else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "the demo page is served only with the embedded demo configuration (tacet serve without --config)",
        )
        .into_response();
    };
    let origin = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "http://127.0.0.1:8080".to_owned(),
            |h| format!("http://{h}"),
        );
    let page = DEMO
        .replace("{{INGEST_KEY}}", &demo.ingest_key)
        .replace("{{READ_KEY}}", &demo.read_key)
        .replace("{{ORIGIN}}", &origin);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
