//! Source maps per tenant and release, kept in the object store beside the lake (never in its event
//! partitions): `sourcemaps/tenant=<id>/release=<hex of the release>/<key>.map` holds the map as uploaded
//! and `<key>.json` what it is for (`{"url", "release", "uploaded", "bytes"}`), `<key>` being the first 32
//! hex characters of the SHA-256 of the minified file's URL. The `tenant=` segment routes a pinned tenant's
//! maps to its own store like its events. Decoded maps are cached; an upload or a deletion drops the
//! entry, and a miss is remembered for a minute, so a map uploaded after the first crashes is used from
//! then on (those crashes keep their minified frames).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sourcemap::DecodedMap;
use tacet_model::{RawEvent, TenantId};

use crate::symbolicate::{file_of, parse_frame, symbolicate};
use crate::{Error, Result};

/// Decoded maps kept in memory before the cache is cleared.
const CACHE: usize = 256;
/// How long a missing map is remembered.
const MISS_TTL: Duration = Duration::from_secs(60);

/// What an uploaded map is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapInfo {
    /// The minified file's URL, as frames name it (without query or fragment).
    pub url: String,
    pub release: String,
    /// RFC 3339.
    pub uploaded: String,
    pub bytes: u64,
}

type Key = (TenantId, String, String);
/// A decoded map, or a remembered miss, and when it was looked up.
type Cached = (Option<Arc<DecodedMap>>, Instant);

/// The source maps of every tenant.
pub struct SourceMaps {
    store: Arc<dyn ObjectStore>,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl std::fmt::Debug for SourceMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMaps").finish_non_exhaustive()
    }
}

fn release_dir(tenant: &TenantId, release: &str) -> String {
    format!(
        "sourcemaps/tenant={}/release={}",
        tenant.as_str(),
        hex::encode(release.as_bytes())
    )
}

fn object(tenant: &TenantId, release: &str, url: &str, ext: &str) -> Path {
    use ring::digest::{SHA256, digest};
    let key = hex::encode(&digest(&SHA256, url.as_bytes()).as_ref()[..16]);
    Path::from(format!("{}/{key}.{ext}", release_dir(tenant, release)))
}

fn store_error(path: &Path, source: object_store::Error) -> Error {
    Error::Lake(tacet_lake::Error::Store {
        path: path.to_string(),
        source,
    })
}

impl SourceMaps {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            cache: Mutex::default(),
        }
    }

    /// Stores the map of the minified file at `url` for `release`, replacing one there. Refuses what is not
    /// a source map, with the parser's reason.
    pub async fn put(
        &self,
        tenant: &TenantId,
        release: &str,
        url: &str,
        map: bytes::Bytes,
    ) -> Result<MapInfo> {
        let url = file_of(url);
        if release.is_empty() || url.is_empty() {
            return Err(Error::Invalid(
                "a source map needs release=… and url=… (the minified file's URL)".into(),
            ));
        }
        sourcemap::decode_slice(&map)
            .map_err(|e| Error::Invalid(format!("not a source map: {e}")))?;
        let info = MapInfo {
            url: url.to_owned(),
            release: release.to_owned(),
            uploaded: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            bytes: map.len() as u64,
        };
        let data = object(tenant, release, url, "map");
        self.store
            .put(&data, map.into())
            .await
            .map_err(|e| store_error(&data, e))?;
        let meta = object(tenant, release, url, "json");
        let json = serde_json::to_vec(&info).expect("serialisable");
        self.store
            .put(&meta, json.into())
            .await
            .map_err(|e| store_error(&meta, e))?;
        self.forget(tenant, release, Some(url));
        Ok(info)
    }

    /// The maps of a release (or of every release), sorted by release and URL.
    pub async fn list(&self, tenant: &TenantId, release: Option<&str>) -> Result<Vec<MapInfo>> {
        let prefix = match release {
            Some(r) => Path::from(release_dir(tenant, r)),
            None => Path::from(format!("sourcemaps/tenant={}", tenant.as_str())),
        };
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| store_error(&prefix, e))?;
        let mut out = Vec::new();
        for m in metas
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".json"))
        {
            let got = self
                .store
                .get(&m.location)
                .await
                .map_err(|e| store_error(&m.location, e))?
                .bytes()
                .await
                .map_err(|e| store_error(&m.location, e))?;
            if let Ok(info) = serde_json::from_slice::<MapInfo>(&got) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| (&a.release, &a.url).cmp(&(&b.release, &b.url)));
        Ok(out)
    }

    /// Deletes the maps of a release (one URL's, or all); how many were deleted.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        release: &str,
        url: Option<&str>,
    ) -> Result<usize> {
        let infos = self.list(tenant, Some(release)).await?;
        let mut deleted = 0;
        for info in infos
            .iter()
            .filter(|i| url.is_none_or(|u| file_of(u) == i.url))
        {
            for ext in ["map", "json"] {
                let path = object(tenant, release, &info.url, ext);
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store_error(&path, e)),
                }
            }
            deleted += 1;
        }
        self.forget(tenant, release, url.map(file_of));
        Ok(deleted)
    }

    /// Up to `radius` lines either side of 1-based `line` of original file `source`, from the embedded
    /// sources of the release's maps, with their 1-based numbers; `None` when no map of the release holds
    /// that file's text. For the crash page; the caller scrubs what it shows.
    pub async fn context(
        &self,
        tenant: &TenantId,
        release: &str,
        source: &str,
        line: u32,
        radius: u32,
    ) -> Result<Option<Vec<(u32, String)>>> {
        for info in self.list(tenant, Some(release)).await? {
            let Some(map) = self.map(tenant, release, &info.url).await else {
                continue;
            };
            let DecodedMap::Regular(sm) = map.as_ref() else {
                continue;
            };
            let Some(idx) = (0..sm.get_source_count()).find(|i| sm.get_source(*i) == Some(source))
            else {
                continue;
            };
            let Some(view) = sm.get_source_view(idx) else {
                continue;
            };
            let first = line.saturating_sub(radius).max(1);
            let lines = (first..=line + radius)
                .filter_map(|n| view.get_line(n - 1).map(|t| (n, t.to_owned())))
                .collect::<Vec<_>>();
            return Ok((!lines.is_empty()).then_some(lines));
        }
        Ok(None)
    }

    /// Deletes every map of the tenant (offboarding); how many.
    pub async fn delete_tenant(&self, tenant: &TenantId) -> Result<usize> {
        let mut deleted = 0;
        let mut releases: Vec<String> = self
            .list(tenant, None)
            .await?
            .into_iter()
            .map(|i| i.release)
            .collect();
        releases.dedup();
        for release in releases {
            deleted += self.delete(tenant, &release, None).await?;
        }
        Ok(deleted)
    }

    fn forget(&self, tenant: &TenantId, release: &str, url: Option<&str>) {
        self.cache
            .lock()
            .expect("source map cache lock")
            .retain(|(t, r, u), _| !(t == tenant && r == release && url.is_none_or(|x| x == u)));
    }

    /// The decoded map for a file of a release, if one was uploaded (cached).
    async fn map(&self, tenant: &TenantId, release: &str, url: &str) -> Option<Arc<DecodedMap>> {
        let key = (tenant.clone(), release.to_owned(), url.to_owned());
        if let Some((map, at)) = self.cache.lock().expect("source map cache lock").get(&key)
            && (map.is_some() || at.elapsed() < MISS_TTL)
        {
            return map.clone();
        }
        let path = object(tenant, release, url, "map");
        let map = match self.store.get(&path).await {
            Ok(got) => match got.bytes().await {
                Ok(bytes) => sourcemap::decode_slice(&bytes).ok().map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a source map; frames stay minified");
                    return None;
                }
            },
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => {
                // Not remembered: the store may be back at the next crash.
                tracing::warn!(error = %e, "cannot read a source map; frames stay minified");
                return None;
            }
        };
        let mut cache = self.cache.lock().expect("source map cache lock");
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(key, (map.clone(), Instant::now()));
        map
    }

    /// Rewrites the `frames` of one crash of `release` whose files have a map; how many were rewritten.
    pub async fn symbolicate_frames(
        &self,
        tenant: &TenantId,
        release: &str,
        frames: &mut [String],
    ) -> usize {
        let mut rewritten = 0;
        for frame in frames.iter_mut() {
            let Some(parsed) = parse_frame(frame) else {
                continue;
            };
            let Some(map) = self.map(tenant, release, file_of(parsed.url)).await else {
                continue;
            };
            if let Some(original) = symbolicate(&parsed, &map) {
                *frame = original;
                rewritten += 1;
            }
        }
        rewritten
    }

    /// Rewrites the frames of the crashes among `events` whose files have a map for the event's release;
    /// how many frames were rewritten.
    pub async fn symbolicate(&self, tenant: &TenantId, events: &mut [RawEvent]) -> usize {
        let mut rewritten = 0;
        // On every request's path: events without a stack (page views, custom events) cost one check.
        for e in events.iter_mut().filter(|e| !e.stack.is_empty()) {
            let Some(release) = e.release.as_deref() else {
                continue;
            };
            rewritten += self.symbolicate_frames(tenant, release, &mut e.stack).await;
        }
        if rewritten > 0 {
            metrics::counter!("tacet_ingest_frames_symbolicated_total").increment(rewritten as u64);
        }
        rewritten
    }
}
