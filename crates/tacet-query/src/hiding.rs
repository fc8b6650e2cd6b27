//! The object store as a query sees it: lake files superseded by a newer generation or a compacted file
//! are hidden (`tacet_lake::visible`), and so are the files a query's snapshot of this node's ingestion
//! buffer already counts (this node's `part-[n<node>-]<from>-<to>.parquet` with `from` above a threshold).
//! Other nodes' files are shown as they are: their buffers are not in the snapshot.

use std::fmt;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub(crate) struct HidingStore {
    inner: Arc<dyn ObjectStore>,
    /// This node's files (see `FileName::node`) whose log range starts above this are hidden.
    newer_than: (Option<u16>, u64),
}

impl HidingStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, node: Option<u16>, newer_than: u64) -> Self {
        Self {
            inner,
            newer_than: (node, newer_than),
        }
    }
}

fn hidden((node, newer_than): (Option<u16>, u64), path: &Path) -> bool {
    tacet_lake::FileName::parse(path).is_some_and(|n| n.node == node && n.from > newer_than)
}

/// The files of one listing a query reads: first those the buffer snapshot does not hold, then of those
/// the ones no other file supersedes.
fn shown(newer_than: (Option<u16>, u64), mut files: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    files.retain(|m| !hidden(newer_than, &m.location));
    tacet_lake::visible(files)
}

impl fmt::Display for HidingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HidingStore({}, node {:?} newer than {})",
            self.inner, self.newer_than.0, self.newer_than.1
        )
    }
}

#[async_trait::async_trait]
impl ObjectStore for HidingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let newer_than = self.newer_than;
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let all: Vec<ObjectMeta> = listing.try_collect().await?;
            Ok::<_, object_store::Error>(shown(newer_than, all))
        })
        .map_ok(|files| futures::stream::iter(files.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = shown(self.newer_than, std::mem::take(&mut result.objects));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_this_nodes_files_by_range_start() {
        let p = |s: &str| Path::from(s);
        let name = "events/tenant=a/kind=pageview/date=2026-11-29/part-00000000000000000007-00000000000000000009.parquet";
        assert!(hidden((None, 6), &p(name)));
        assert!(!hidden((None, 7), &p(name)));
        assert!(!hidden((None, 0), &p("events/tenant=a/other.parquet")));
        let other = "events/tenant=a/kind=pageview/date=2026-11-29/part-n2-00000000000000000007-00000000000000000009.parquet";
        assert!(!hidden((None, 6), &p(other)), "another node's file");
        assert!(!hidden((Some(1), 6), &p(other)), "another node's file");
        assert!(hidden((Some(2), 6), &p(other)));
        assert!(
            !hidden((Some(2), 6), &p(name)),
            "a file of the single-node lake"
        );
    }
}
