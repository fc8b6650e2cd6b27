//! The data subject's rights: access and portability (export), erasure, objection and restriction,
//! rectification. A person is named by the user id the tenant's app sends; what is stored is their
//! pseudonym under each of the tenant's subject key versions, and that is what is searched for.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use serde::Serialize;
use serde_json::json;
use tacet_ingest::Change;
use tacet_model::TenantId;
use tacet_privacy::{Known, Scrubber, Tally, TenantPolicy};
use tacet_query::QueryOutput;

use crate::rewrite::RewriteReport;
use crate::{Error, Progress, Result, Steward};

/// A person's stored events and the manifest that explains them.
#[derive(Debug)]
pub struct SubjectExport {
    pub manifest: serde_json::Value,
    pub rows: QueryOutput,
}

/// One change to a property of a person's events: set `key` to `value`, or remove it (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropChange {
    pub key: String,
    pub value: Option<String>,
}

impl PropChange {
    /// Parses `key=value` (set) or `key=` (remove).
    pub fn parse(s: &str) -> Result<Self> {
        let (key, value) = s.split_once('=').ok_or_else(|| {
            Error::User(format!(
                "{s:?}: write KEY=VALUE to set a property, or KEY= to remove it"
            ))
        })?;
        if key.is_empty() {
            return Err(Error::User(format!("{s:?}: the property key is empty")));
        }
        Ok(Self {
            key: key.to_owned(),
            value: (!value.is_empty()).then(|| value.to_owned()),
        })
    }
}

/// What the export's columns hold, for the manifest.
const COLUMNS: &[(&str, &str)] = &[
    ("ts", "when the event happened (UTC)"),
    ("kind", "pageview, event or crash"),
    ("date", "the day (UTC) the event is filed under"),
    (
        "visitor_id",
        "a daily-rotating count key (hash of IP address and browser under a salt destroyed 48 hours after the day); it identifies no one after that",
    ),
    (
        "user_pseudonym",
        "your pseudonym: a keyed hash of your user id, how these rows were found",
    ),
    (
        "browser, browser_version, os, os_version, device, is_bot",
        "from the browser's user agent",
    ),
    (
        "country, region, city",
        "from the IP address at arrival (the address itself is never stored)",
    ),
    (
        "ip_prefix",
        "the IP address truncated to its network (/24 or /48), if the service keeps it",
    ),
    (
        "url_host, url_path, url_query, utm_*",
        "the page, without query parameters other than the allowed ones",
    ),
    (
        "referrer_host, referrer_class, referrer_source",
        "where you came from",
    ),
    ("name, props", "the custom event and its properties"),
    (
        "error_type, message, stack, release, fingerprint",
        "crash reports, with secrets and identifiers scrubbed",
    ),
    (
        "anonymised",
        "why the event was stored without identifiers, if it was",
    ),
    (
        "arrival",
        "the order the server received events in, for events with the same time",
    ),
];

/// An erasure whose record is written ([`Steward::begin_erasure`]) and whose rewrite is to come. While it
/// lives, this process counts as finishing it; dropped unfinished, the erasure is left to
/// [`Steward::resume_erasures`].
#[derive(Debug)]
pub struct BegunErasure {
    /// The record's id (`None`: the tenant has no subject key, so nothing identified was ever stored).
    pub record: Option<String>,
    pseudonyms: Vec<String>,
    _running: Option<Running>,
}

/// A record id in the steward's set of erasures this process is finishing, for as long as it lives.
#[derive(Debug)]
struct Running {
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl Running {
    fn new(set: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>, id: &str) -> Self {
        set.lock().expect("erasing lock").insert(id.to_owned());
        Self {
            set: Arc::clone(set),
            id: id.to_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set.lock().expect("erasing lock").remove(&self.id);
    }
}

impl Steward {
    /// Every stored (and buffered) event of the person, with a manifest of what is included and why other
    /// data cannot be linked to them. Also the events of a person who objected.
    pub async fn export(
        &self,
        tenant: &TenantId,
        user_id: &str,
        format: &str,
        actor: &str,
    ) -> Result<SubjectExport> {
        let pseudonyms = self.pseudonyms(tenant, user_id)?;
        let request = crate::request_id();
        let rows = if pseudonyms.is_empty() {
            // No subject key yet: nothing identified was ever stored.
            QueryOutput {
                schema: Arc::new(arrow::datatypes::Schema::empty()),
                batches: Vec::new(),
                truncated: false,
                suppressed: 0,
                source: None,
            }
        } else {
            self.query.subject_rows(tenant, &pseudonyms).await?
        };
        let n = rows.num_rows();
        let manifest = json!({
            "request": request,
            "tenant": tenant.as_str(),
            "generated_at": self.pipeline.clock().now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "format": format,
            "rows": n,
            "included": format!(
                "Every event stored for this tenant whose user pseudonym is yours: your user id under each of \
                 the tenant's {} subject key version(s). Events still in memory are included.",
                pseudonyms.len()
            ),
            "columns": COLUMNS.iter().map(|(c, d)| json!({"columns": c, "meaning": d})).collect::<Vec<_>>(),
            "not_included": [
                "Events sent without your user id (for example before you logged in): they carry only a daily visitor id, a keyed hash of IP address and browser whose key is destroyed 48 hours after the day ends, so they cannot be linked to you by anyone, us included.",
                "Events stored without identifiers because of Do-Not-Track, Global Privacy Control or missing consent.",
                "Events past the tenant's retention period, which are deleted.",
                "Daily rollups: counts per page, browser, country and so on, which hold no pseudonym and describe no one.",
                "Events dropped on arrival (bots, or after you objected)."
            ],
        });
        self.audit.append(
            actor,
            "subject.export",
            Some(tenant.as_str()),
            json!({"request": request, "rows": n, "format": format}),
        )?;
        Ok(SubjectExport { manifest, rows })
    }

    /// Erases the person: every stored row of theirs, from the lake, the buffer and the log (see
    /// `rewrite.rs`), verified by reading back. [`Steward::begin_erasure`] and
    /// [`Steward::finish_erasure`] in one.
    pub async fn erase(
        &self,
        tenant: &TenantId,
        user_id: &str,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RewriteReport> {
        let begun = self.begin_erasure(tenant, user_id)?;
        self.finish_erasure(tenant, begun, actor, progress).await
    }

    /// The first half of an erasure, which takes a moment: the record written (from here on no node
    /// writes the person's earlier events to the lake, whether it answers now or later, and queries on
    /// every node leave the person out: tacet-ingest erasures.rs) and applied on this node.
    pub fn begin_erasure(&self, tenant: &TenantId, user_id: &str) -> Result<BegunErasure> {
        let pseudonyms = self.pseudonyms(tenant, user_id)?;
        let record = self.pipeline.keys().record_erasure(tenant, user_id)?;
        let running = record.as_deref().map(|id| Running::new(&self.erasing, id));
        self.pipeline.apply_erasures()?;
        Ok(BegunErasure {
            record,
            pseudonyms,
            _running: running,
        })
    }

    /// The rest of an erasure: the lake rewritten and verified, the record settled, the audit entry and
    /// the receipt (kept under the record's id, so any node can say when the last byte went).
    pub async fn finish_erasure(
        &self,
        tenant: &TenantId,
        begun: BegunErasure,
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RewriteReport> {
        let BegunErasure {
            record,
            pseudonyms,
            _running,
        } = begun;
        // Held while the lake is rewritten, so that no other node resumes this erasure meanwhile.
        let lease = match &record {
            Some(id) => self.lease(&format!("erasure-{id}")).ok().flatten(),
            None => None,
        };
        // Renewed at every step, so that a long rewrite keeps it.
        let renewing = |done: usize, total: usize, what: &str| {
            if let Some(lease) = &lease {
                let _ = lease.renew();
            }
            progress(done, total, what)
        };
        let result = self
            .rewrite_erasure(tenant, &record, &pseudonyms, actor, &renewing)
            .await;
        if let Some(lease) = lease {
            let _ = lease.release();
        }
        if let Some(id) = &record {
            let receipt = match &result {
                Ok(report) => {
                    serde_json::json!({"done": true, "finished_at": self.pipeline.clock().now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "receipt": report})
                }
                Err(e) => serde_json::json!({"done": false, "failed": e.to_string(),
                    "what_to_do": "nothing stays hidden for this request; make the request again"}),
            };
            if let Err(e) = self.pipeline.keys().put_receipt(tenant, id, &receipt) {
                tracing::warn!(error = %e, "cannot keep an erasure's receipt");
            }
        }
        result
    }

    async fn rewrite_erasure(
        &self,
        tenant: &TenantId,
        record: &Option<String>,
        pseudonyms: &[String],
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RewriteReport> {
        let remove = |batch: &RecordBatch, mask: &BooleanArray| -> Result<Option<RecordBatch>> {
            let keep = arrow::compute::not(mask)?;
            Ok(Some(arrow::compute::filter_record_batch(batch, &keep)?))
        };
        let rewritten = self
            .rewrite_subject(
                tenant,
                pseudonyms,
                &remove,
                crate::rewrite::Waiting::Running,
                progress,
            )
            .await;
        let mut report = match rewritten {
            Ok(report) => report,
            Err(e) => {
                // The lake still holds the person's rows and the request must be made again; the record
                // has dropped what this node held, and must not outlive that: it waits for the other
                // registered nodes only (none: deleted now), so it never keeps the pseudonyms, or drops the
                // person's later events, for good.
                if let Some(id) = record {
                    let others: Vec<u16> = match self.pipeline.peers() {
                        Some(p) => p
                            .registered()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|n| *n != p.node())
                            .collect(),
                        None => Vec::new(),
                    };
                    if let Err(settle) = self.pipeline.keys().settle_erasure(tenant, id, &others) {
                        tracing::warn!(error = %settle, "cannot settle the erasure record of a failed erasure");
                    }
                }
                return Err(e);
            }
        };
        // The nodes that answered applied the record; those that did not must still (the record then
        // stays until they have); with none left, it goes now.
        if let Some(id) = record {
            self.pipeline
                .keys()
                .settle_erasure(tenant, id, &report.nodes_pending)?;
        }
        report.erasure_record = record.clone();
        self.audit.append(
            actor,
            "subject.erase",
            Some(tenant.as_str()),
            json!({"request": report.request, "rows": report.rows, "files_rewritten": report.files_rewritten,
                "files_deleted": report.files_deleted, "files_scanned": report.files_scanned,
                "record": report.erasure_record, "nodes_pending": report.nodes_pending, "gaps": report.gaps}),
        )?;
        Ok(report)
    }

    /// Finishes erasures that were begun and never finished (the node that took the request stopped
    /// or crashed): records still marked running, older than `after`, with no receipt, and not being
    /// finished here. Each is taken under the lease `erasure-<id>` when leases are set, so one node does
    /// it. Also forgets receipts older than 30 days. Returns how many it finished.
    pub async fn resume_erasures(&self, after: std::time::Duration, actor: &str) -> Result<usize> {
        let keys = self.pipeline.keys();
        let now = self.pipeline.clock().now();
        let mut finished = 0;
        for tenant in keys.tenants_with_erasures()? {
            for record in keys.erasures(&tenant)? {
                let begun_at = chrono::DateTime::parse_from_rfc3339(&record.at)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or(now);
                let stale = (now - begun_at).to_std().unwrap_or_default() >= after;
                if record.waiting.is_some()
                    || !stale
                    || self
                        .erasing
                        .lock()
                        .expect("erasing lock")
                        .contains(&record.id)
                    || keys.receipt(&tenant, &record.id)?.is_some()
                {
                    continue;
                }
                // Free, or lapsed: its holder is gone (finish_erasure takes it again at once).
                match self.lease(&format!("erasure-{}", record.id)) {
                    Ok(Some(lease)) => lease.release()?,
                    Ok(None) => {}
                    Err(Error::Busy(_)) => continue,
                    Err(e) => return Err(e),
                }
                tracing::info!(tenant = %tenant, record = %record.id, "finishing an erasure its node left unfinished");
                let begun = BegunErasure {
                    _running: Some(Running::new(&self.erasing, &record.id)),
                    record: Some(record.id.clone()),
                    pseudonyms: record.pseudonyms.clone(),
                };
                self.finish_erasure(&tenant, begun, actor, &crate::quiet)
                    .await?;
                finished += 1;
            }
        }
        keys.forget_receipts(30)?;
        Ok(finished)
    }

    /// Rectification: changes properties of every stored event of the person (values scrubbed like
    /// arriving ones), rewriting the files that hold them the way erasure does.
    pub async fn rectify(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        user_id: &str,
        changes: &[PropChange],
        actor: &str,
        progress: Progress<'_>,
    ) -> Result<RewriteReport> {
        if changes.is_empty() {
            return Err(Error::User(
                "no change given: name at least one property, KEY=VALUE or KEY=".into(),
            ));
        }
        // The person's own id must not come back in through a new property value.
        let known: Vec<Known> = Known::user(user_id).into_iter().collect();
        let scrubber = Scrubber::for_policy(policy).with_known(&known);
        let mut tally = Tally::default();
        let changes: Vec<PropChange> = changes
            .iter()
            .map(|c| PropChange {
                key: c.key.clone(),
                value: c
                    .value
                    .as_deref()
                    .map(|v| scrubber.property(&c.key, v, &mut tally)),
            })
            .collect();
        if let Some(c) = changes.iter().find(|c| !policy.keeps_prop(&c.key)) {
            return Err(Error::User(format!(
                "property {:?} is not in the tenant's props allow-list; it is never stored",
                c.key
            )));
        }
        let pseudonyms = self.pseudonyms(tenant, user_id)?;
        let edit = |batch: &RecordBatch, mask: &BooleanArray| -> Result<Option<RecordBatch>> {
            Ok(Some(set_props(batch, mask, &changes)?))
        };
        let report = self
            .rewrite_subject(
                tenant,
                &pseudonyms,
                &edit,
                crate::rewrite::Waiting::Everyone,
                progress,
            )
            .await?;
        self.audit.append(
            actor,
            "subject.rectify",
            Some(tenant.as_str()),
            json!({"request": report.request, "rows": report.rows, "files_rewritten": report.files_rewritten,
                "keys": changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>()}),
        )?;
        Ok(report)
    }

    /// Records an objection (or restriction): the person's events are dropped at ingestion with reason
    /// `objected` and their stored events left out of every query and report.
    pub fn object(&self, tenant: &TenantId, user_id: &str, actor: &str) -> Result<Change> {
        let change = self.pipeline.keys().object(tenant, user_id)?;
        self.audit.append(
            actor,
            "subject.object",
            Some(tenant.as_str()),
            json!({"request": crate::request_id(), "change": format!("{change:?}").to_lowercase()}),
        )?;
        Ok(change)
    }

    /// Records that the person withdrew their objection.
    pub fn withdraw(&self, tenant: &TenantId, user_id: &str, actor: &str) -> Result<Change> {
        let change = self.pipeline.keys().withdraw_objection(tenant, user_id)?;
        self.audit.append(
            actor,
            "subject.withdraw",
            Some(tenant.as_str()),
            json!({"request": crate::request_id(), "change": format!("{change:?}").to_lowercase()}),
        )?;
        Ok(change)
    }
}

/// `batch` with `changes` applied to the `props` of the rows in `mask`.
fn set_props(
    batch: &RecordBatch,
    mask: &BooleanArray,
    changes: &[PropChange],
) -> Result<RecordBatch> {
    let index = batch
        .schema()
        .index_of("props")
        .map_err(|e| Error::Verify(format!("a lake file without props: {e}")))?;
    let props = batch.column(index).as_map();
    let mut builder = tacet_model::schema::props_builder();
    for row in 0..batch.num_rows() {
        let mut entries: Vec<(String, Option<String>)> = Vec::new();
        if !props.is_null(row) {
            let m = props.value(row);
            let keys = m.column(0).as_string::<i32>();
            let values = m.column(1).as_string::<i32>();
            for i in 0..m.len() {
                entries.push((
                    keys.value(i).to_owned(),
                    (!values.is_null(i)).then(|| values.value(i).to_owned()),
                ));
            }
        }
        let null_before = props.is_null(row);
        if mask.value(row) {
            for c in changes {
                entries.retain(|(k, _)| *k != c.key);
                if let Some(v) = &c.value {
                    entries.push((c.key.clone(), Some(v.clone())));
                }
            }
            entries.sort();
        }
        if null_before && entries.is_empty() {
            builder.append(false)?;
            continue;
        }
        for (k, v) in entries {
            builder.keys().append_value(k);
            builder.values().append_option(v);
        }
        builder.append(true)?;
    }
    let new: ArrayRef = Arc::new(builder.finish());
    // The builder's field types must be the file's; cast names and nullability into place.
    let target = batch.schema().field(index).data_type().clone();
    let new = if new.data_type() == &target {
        new
    } else {
        arrow::compute::cast(&new, &target)?
    };
    let mut columns = batch.columns().to_vec();
    columns[index] = new;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prop_changes_parse() {
        assert_eq!(
            PropChange::parse("plan=pro").unwrap(),
            PropChange {
                key: "plan".into(),
                value: Some("pro".into())
            }
        );
        assert_eq!(PropChange::parse("plan=").unwrap().value, None);
        assert!(PropChange::parse("plan").is_err());
        assert!(PropChange::parse("=x").is_err());
    }
}
