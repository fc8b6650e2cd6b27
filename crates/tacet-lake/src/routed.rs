//! One lake over several object stores: a tenant may be pinned to its own bucket or prefix (data
//! residency: a client's events stay in the region its contract names), every other tenant lives in the
//! default store. Routing is by the tenant segment of the lake layout (`events/tenant=<id>/…`,
//! `rollups/tenant=<id>/…`), so nothing above this store knows: writers, readers, DataFusion's listing
//! table and the lifecycle jobs all see one tree.
//!
//! A listing whose prefix names a tenant goes to that tenant's store alone; a wider listing (`events/`,
//! the root) is the default store's objects of unpinned tenants plus each pinned store's objects of its
//! tenant, so a tenant's data never shows up twice and never leaks from one store into another's tree.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The default store plus the stores of pinned tenants.
#[derive(Debug)]
pub struct RoutedStore {
    default: Arc<dyn ObjectStore>,
    pinned: BTreeMap<String, Arc<dyn ObjectStore>>,
}

/// The tenant a lake path belongs to: the `tenant=<id>` second segment, if any.
fn tenant_of(path: &str) -> Option<&str> {
    let mut parts = path.split('/');
    parts.next()?;
    parts.next()?.strip_prefix("tenant=")
}

impl RoutedStore {
    /// `pinned`: tenant id → the store holding that tenant's objects.
    pub fn new(
        default: Arc<dyn ObjectStore>,
        pinned: impl IntoIterator<Item = (String, Arc<dyn ObjectStore>)>,
    ) -> Self {
        Self {
            default,
            pinned: pinned.into_iter().collect(),
        }
    }

    fn route(&self, path: &Path) -> &Arc<dyn ObjectStore> {
        tenant_of(path.as_ref())
            .and_then(|t| self.pinned.get(t))
            .unwrap_or(&self.default)
    }

    fn belongs(&self, owner: Option<&str>, path: &Path) -> bool {
        belongs(|t| self.pinned.contains_key(t), owner, path)
    }
}

/// Whether an object listed from the store of `owner` (`None`: the default store) belongs there.
fn belongs(is_pinned: impl Fn(&str) -> bool, owner: Option<&str>, path: &Path) -> bool {
    match (owner, tenant_of(path.as_ref())) {
        (Some(owner), tenant) => tenant == Some(owner),
        (None, Some(tenant)) => !is_pinned(tenant),
        (None, None) => true,
    }
}

impl fmt::Display for RoutedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutedStore({}", self.default)?;
        for (tenant, store) in &self.pinned {
            write!(f, ", tenant={tenant}: {store}")?;
        }
        write!(f, ")")
    }
}

#[async_trait::async_trait]
impl ObjectStore for RoutedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.route(location).put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.route(location)
            .put_multipart_opts(location, opts)
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.route(location).get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // One at a time, each to its own store (deletions here are few: retention, rewrites).
        let default = Arc::clone(&self.default);
        let pinned = self.pinned.clone();
        locations
            .then(move |location| {
                let (default, pinned) = (Arc::clone(&default), pinned.clone());
                async move {
                    let location = location?;
                    let store = tenant_of(location.as_ref())
                        .and_then(|t| pinned.get(t))
                        .unwrap_or(&default);
                    store.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Some(p) = prefix
            && tenant_of(p.as_ref()).is_some()
        {
            return self.route(p).list(prefix);
        }
        let mut streams = vec![(None, self.default.list(prefix))];
        for (tenant, store) in &self.pinned {
            streams.push((Some(tenant.clone()), store.list(prefix)));
        }
        let pinned: Arc<std::collections::BTreeSet<String>> =
            Arc::new(self.pinned.keys().cloned().collect());
        futures::stream::iter(streams)
            .flat_map(move |(owner, stream)| {
                let pinned = Arc::clone(&pinned);
                stream.filter(move |m| {
                    let keep = m.as_ref().map_or(true, |m| {
                        belongs(|t| pinned.contains(t), owner.as_deref(), &m.location)
                    });
                    futures::future::ready(keep)
                })
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        if let Some(p) = prefix
            && tenant_of(p.as_ref()).is_some()
        {
            return self.route(p).list_with_delimiter(prefix).await;
        }
        let mut out = self.default.list_with_delimiter(prefix).await?;
        out.common_prefixes.retain(|p| self.belongs(None, p));
        out.objects.retain(|m| self.belongs(None, &m.location));
        for (tenant, store) in &self.pinned {
            let theirs = store.list_with_delimiter(prefix).await?;
            out.common_prefixes.extend(
                theirs
                    .common_prefixes
                    .into_iter()
                    .filter(|p| self.belongs(Some(tenant), p)),
            );
            out.objects.extend(
                theirs
                    .objects
                    .into_iter()
                    .filter(|m| self.belongs(Some(tenant), &m.location)),
            );
        }
        out.common_prefixes.sort();
        out.common_prefixes.dedup();
        out.objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let (a, b) = (tenant_of(from.as_ref()), tenant_of(to.as_ref()));
        let pinned = |t: Option<&str>| t.is_some_and(|t| self.pinned.contains_key(t));
        if (pinned(a) || pinned(b)) && a != b {
            return Err(object_store::Error::NotSupported {
                source: format!("copying {from} to {to} would cross stores").into(),
            });
        }
        self.route(from).copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_pinned_tenant_lives_in_its_own_store_and_listings_merge() {
        let default: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let eu: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let routed = RoutedStore::new(Arc::clone(&default), [("eu".to_owned(), Arc::clone(&eu))]);
        for p in [
            "events/tenant=a/kind=event/date=2026-11-29/part-1-1.parquet",
            "events/tenant=eu/kind=event/date=2026-11-29/part-1-1.parquet",
            "rollups/tenant=eu/date=2026-11-28/rollup.parquet",
        ] {
            routed.put(&Path::from(p), "x".into()).await.unwrap();
        }
        let names = |store: Arc<dyn ObjectStore>| async move {
            let mut v: Vec<String> = store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            v.sort();
            v
        };
        assert_eq!(
            names(Arc::clone(&eu)).await,
            [
                "events/tenant=eu/kind=event/date=2026-11-29/part-1-1.parquet",
                "rollups/tenant=eu/date=2026-11-28/rollup.parquet"
            ]
        );
        assert_eq!(
            names(Arc::clone(&default)).await,
            ["events/tenant=a/kind=event/date=2026-11-29/part-1-1.parquet"]
        );
        // A stray copy of a pinned tenant's object in the default store is not shown.
        default
            .put(
                &Path::from("events/tenant=eu/kind=event/date=2026-11-29/stray.parquet"),
                "x".into(),
            )
            .await
            .unwrap();
        let routed: Arc<dyn ObjectStore> = Arc::new(routed);
        let all = names(Arc::clone(&routed)).await;
        assert_eq!(all.len(), 3, "{all:?}");
        let one: Vec<String> = routed
            .list(Some(&Path::from("events/tenant=eu")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            one,
            ["events/tenant=eu/kind=event/date=2026-11-29/part-1-1.parquet"]
        );
        let tenants = routed
            .list_with_delimiter(Some(&Path::from("events")))
            .await
            .unwrap();
        assert_eq!(
            tenants
                .common_prefixes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["events/tenant=a", "events/tenant=eu"]
        );
        routed
            .delete(&Path::from(
                "events/tenant=eu/kind=event/date=2026-11-29/part-1-1.parquet",
            ))
            .await
            .unwrap();
        assert_eq!(names(eu).await.len(), 1);
    }
}
