//! The `visits` table: one row per visit (a run of one visitor id's events with no gap longer than 30
//! minutes, within one day), materialised per tenant and day beside the day's rollup, and a table of every
//! session that has `events`.
//!
//! ```text
//! visits/tenant=<id>/date=<YYYY-MM-DD>/visits.parquet   (encrypted under the tenant's data key, as events)
//!   date          the day (of the zone the rollup beside it counts)
//!   visitor_id    the visitor id (keyed, daily-rotating hash: pseudonymous, so the file follows the events'
//!                 retention, erasure and offboarding, never the rollups')
//!   started, ended, duration_ms
//!                 the first and last event's time, and the milliseconds between them
//!   pageviews, events, bounce
//!                 page views in the visit, events of any kind, and whether it had exactly one page view
//!   entry_page, exit_page
//!                 the path of its first and last page view (null: a visit without page views)
//!   referrer_class, referrer_source, utm_source, utm_medium, utm_campaign, country, browser, os, device,
//!   release       of its first page view
//! ```
//!
//! Written by [`QueryEngine::rollup_day`] before the day's rollup, whose footer records the visits file's
//! size (`tacet.rollup.visits`): a day's stored visits are the answer exactly when its rollup is current
//! for it (the same files, the same objections, the day closed and nothing of it buffered, crate::source)
//! and the visits file is the one that run wrote. Every other day, today's included, is computed from raw
//! events with the same SQL when a query reads the table, and the table is the union of both: a query never
//! sees a day twice or a day missing. Visits are per day by construction (the window is partitioned by the
//! day), so a late event carrying a visitor id into another day makes two visits here; the reports' ranges
//! count such a visitor's events as one visit (crate::report).
//!
//! Days are the tenant's (`[privacy] timezone`, [`QueryEngine::set_zones`]) in SQL too (`/v1/sql`, the
//! Postgres door, Flight SQL), where `events.ts` is shown in UTC: its visitor ids rotate at its midnight, so
//! its days cut no visit that its ids do not, `visits` counts what its reports count, and its stored days
//! are read as they are for a tenant in UTC. Computed days then skip the UTC partitions that hold only
//! stored days' events, and the rows of stored days in the others.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tacet_model::TenantId;

use crate::footer::{day_text, local_day_files, raw_files_by_day};
use crate::{Error, QueryEngine, Result};

/// Where visits live in the object store.
pub const VISITS_ROOT: &str = "visits";

/// A day's visits, in `visits/tenant=<id>/date=<day>/`.
pub const VISITS_FILE: &str = "visits.parquet";

/// `visits/tenant=<id>/`
pub fn visits_prefix(tenant: &TenantId) -> String {
    format!("{VISITS_ROOT}/tenant={tenant}/")
}

/// The day of a visits file's path (`…/date=<day>/visits.parquet`).
pub fn visits_date(path: &Path) -> Option<NaiveDate> {
    path.parts().find_map(|p| {
        p.as_ref()
            .strip_prefix("date=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    })
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(
        TimeUnit::Millisecond,
        Some(tacet_model::schema::TS_TZ.into()),
    );
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Utf8, false),
        Field::new("visitor_id", DataType::Int64, false),
        Field::new("started", ts.clone(), false),
        Field::new("ended", ts, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("pageviews", DataType::Int64, false),
        Field::new("events", DataType::Int64, false),
        Field::new("bounce", DataType::Boolean, false),
        s("entry_page"),
        s("exit_page"),
        s("referrer_class"),
        s("referrer_source"),
        s("utm_source"),
        s("utm_medium"),
        s("utm_campaign"),
        s("country"),
        s("browser"),
        s("os"),
        s("device"),
        s("release"),
    ]))
});

/// The schema of a visits file, and of the `visits` table.
pub fn visits_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The columns the first page view of a visit gives it.
const FROM_ENTRY: &str = "referrer_class, referrer_source, utm_source, utm_medium, utm_campaign, \
     country, browser, os, device, release";

/// Visits from `events`: those whose events satisfy `filter`, the day of an event being `day` (an
/// expression). Columns in [`visits_schema`]'s order and types (but nullability: cast on writing).
fn visits_sql(day: &str, filter: &str) -> String {
    let window = "PARTITION BY day, visit_bucket ORDER BY visitor_id, ts, arrival";
    format!(
        "WITH scoped AS (
    SELECT *, {day} AS day, visitor_id % 64 AS visit_bucket
    FROM events WHERE visitor_id IS NOT NULL AND {filter}
),
tagged AS (
    SELECT *, tacet_visit(visitor_id, ts) OVER ({window}) AS visit_no FROM scoped
),
views AS (
    SELECT day, visitor_id, visit_no, url_path, {FROM_ENTRY},
        tacet_prev(visit_no) OVER ({window}) AS prev_visit,
        tacet_next(visit_no) OVER ({window}) AS next_visit
    FROM tagged WHERE kind = 'pageview'
),
totals AS (
    SELECT day, visitor_id, visit_no, MIN(ts) AS started, MAX(ts) AS ended,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews, COUNT(*) AS events
    FROM tagged GROUP BY day, visitor_id, visit_no
),
entries AS (SELECT * FROM views WHERE prev_visit IS DISTINCT FROM visit_no),
exits AS (SELECT day, visitor_id, visit_no, url_path FROM views WHERE next_visit IS DISTINCT FROM visit_no)
SELECT CAST(t.day AS VARCHAR) AS date, t.visitor_id,
    arrow_cast(t.started, 'Timestamp(Millisecond, Some(\"{tz}\"))') AS started,
    arrow_cast(t.ended, 'Timestamp(Millisecond, Some(\"{tz}\"))') AS ended,
    CAST(t.ended AS BIGINT) - CAST(t.started AS BIGINT) AS duration_ms,
    CAST(t.pageviews AS BIGINT) AS pageviews, CAST(t.events AS BIGINT) AS events,
    t.pageviews = 1 AS bounce,
    n.url_path AS entry_page, x.url_path AS exit_page,
    n.referrer_class, n.referrer_source, n.utm_source, n.utm_medium, n.utm_campaign,
    n.country, n.browser, n.os, n.device, n.release
FROM totals t
LEFT JOIN entries n ON n.day = t.day AND n.visitor_id = t.visitor_id AND n.visit_no = t.visit_no
LEFT JOIN exits x ON x.day = t.day AND x.visitor_id = t.visitor_id AND x.visit_no = t.visit_no",
        tz = tacet_model::schema::TS_TZ,
    )
}

/// One day's visits, for [`QueryEngine::rollup_day`]: its events are `crate::rollup`'s `DAY_EVENTS` (bound
/// `$lo`, `$hi`, `$start`, `$end`), its day `$day`; ordered by start.
pub(crate) fn day_sql(day_events: &str) -> String {
    format!(
        "{} ORDER BY started, visitor_id",
        visits_sql("$day", day_events)
    )
}

/// An event's day of zone `days` (`YYYY-MM-DD`) in a session whose `ts` is shown in `shown`: the
/// partition's date in UTC (crate::report), else the date of `ts` in that zone.
fn day_of_event(days: chrono_tz::Tz, shown: chrono_tz::Tz) -> String {
    if days == chrono_tz::UTC && shown == chrono_tz::UTC {
        "date".to_owned()
    } else if days == shown {
        "CAST(CAST(ts AS DATE) AS VARCHAR)".to_owned()
    } else {
        format!(
            "CAST(CAST(arrow_cast(ts, 'Timestamp(Millisecond, Some(\"{}\"))') AS DATE) AS VARCHAR)",
            days.name()
        )
    }
}

/// The UTC dates whose every event is on a day of `zone` among `stored` (comma-separated): their
/// partitions have nothing for the computed side.
fn covered_utc_dates(zone: chrono_tz::Tz, stored: &BTreeMap<String, Path>) -> String {
    use crate::report::{dates, local_dates, utc_dates};
    let is_stored = |d: NaiveDate| stored.contains_key(&day_text(d));
    let mut covered = std::collections::BTreeSet::new();
    for day in stored.keys() {
        let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
            continue;
        };
        let (lo, hi) = utc_dates(zone, day);
        covered.extend(
            dates(lo, hi)
                .filter(|u| {
                    let (first, last) = local_dates(zone, *u);
                    dates(first, last).all(is_stored)
                })
                .map(day_text),
        );
    }
    covered.into_iter().collect::<Vec<_>>().join(",")
}

/// Which days client SQL's `visits` has (per day of `zone`, the tenant's), and which of them are read from
/// their stored files (day → file; every other day is computed from events).
#[derive(Debug, Clone)]
pub(crate) struct Days {
    pub(crate) zone: chrono_tz::Tz,
    pub(crate) stored: BTreeMap<String, Path>,
}

/// Encodes a day's visits as a visits file, encrypted under `key` when given.
fn encode(batches: &[RecordBatch], key: Option<&[u8]>) -> Result<Vec<u8>> {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::Encoding;
    use datafusion::parquet::file::metadata::SortingColumn;
    use datafusion::parquet::schema::types::ColumnPath;
    let schema = visits_schema();
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("encoding visits: {e}"));
    let started = schema.index_of("started").map_err(|e| failed(&e))? as i32;
    // Times rise through the file (sorted by start): deltas, not a dictionary of nearly unique values.
    let mut props = tacet_lake::writer_properties_with(key, rows)
        .map_err(|e| failed(&e))?
        .into_builder();
    for column in ["started", "ended", "duration_ms"] {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    let props = props
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: started,
            descending: false,
            nulls_first: false,
        }]))
        .build();
    let mut buf = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut buf, Arc::clone(&schema), Some(props)).map_err(|e| failed(&e))?;
    for b in crate::format::conform(&schema, batches).map_err(|e| failed(&e))? {
        w.write(&b).map_err(|e| failed(&e))?;
    }
    w.close().map_err(|e| failed(&e))?;
    Ok(buf)
}

impl QueryEngine {
    /// Writes a day's visits (`day`, `YYYY-MM-DD`) as its visits file, encrypted under the tenant's data
    /// key when the lake encrypts, replacing an earlier one; returns where, and its size.
    pub(crate) async fn write_visits(
        &self,
        tenant: &TenantId,
        day: &str,
        batches: &[RecordBatch],
    ) -> Result<(Path, usize)> {
        let key = self.inner.data_key(tenant)?;
        let bytes = encode(batches, key.as_deref())?;
        let size = bytes.len();
        let path = Path::from(format!("{}date={day}/{VISITS_FILE}", visits_prefix(tenant)));
        self.store()
            .put(&path, bytes.into())
            .await
            .map_err(|e| Error::Internal(format!("writing {path}: {e}")))?;
        Ok((path, size))
    }

    /// The tenant's visits files by day: path and size.
    pub(crate) async fn visit_files(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<String, (Path, u64)>> {
        let prefix = Path::from(visits_prefix(tenant));
        let mut listed = self.store().list(Some(&prefix));
        let mut out = BTreeMap::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?;
            if meta.location.filename() != Some(VISITS_FILE) {
                continue;
            }
            if let Some(day) = visits_date(&meta.location) {
                out.insert(day_text(day), (meta.location, meta.size));
            }
        }
        Ok(out)
    }

    /// The days whose stored visits are the raw events' answer now, for a session whose days are those of
    /// `zone` and which leaves out the objections (`restricted`: else it reads every day raw), with their
    /// files. None with `[query] from_rollups = false`.
    pub async fn stored_visit_days(
        &self,
        tenant: &TenantId,
        zone: chrono_tz::Tz,
        restricted: bool,
    ) -> Result<BTreeMap<String, Path>> {
        let mut out = BTreeMap::new();
        if !self.inner.config.from_rollups || !restricted {
            return Ok(out);
        }
        let visits = self.visit_files(tenant).await?;
        if visits.is_empty() {
            return Ok(out);
        }
        let files = raw_files_by_day(self.store(), tenant).await?;
        let (rollups, _) = self.rollups_by_day(tenant).await?;
        let objections = self.restricted_now(tenant)?;
        let Some(buffered) = self.buffered_days(tenant)? else {
            return Ok(out);
        };
        let today = chrono::Utc::now().with_timezone(&zone).date_naive();
        let candidates: Vec<(String, Path, i64)> = rollups
            .into_iter()
            .filter(|(day, _)| visits.contains_key(day))
            .map(|(day, (path, at))| (day, path, at))
            .collect();
        let ahead: Vec<(Path, i64)> = candidates
            .iter()
            .map(|(_, p, at)| (p.clone(), *at))
            .collect();
        self.read_rollups_ahead(&ahead, None).await?;
        for (day, path, at) in candidates {
            let Ok(date) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") else {
                continue;
            };
            if date >= today {
                continue;
            }
            let rollup = self.rollup_file(&path, at, None).await?;
            let Some(meta) = rollup.meta.as_ref() else {
                continue;
            };
            let (lo, hi) = crate::report::utc_dates(zone, date);
            let (stored, size) = &visits[&day];
            let current = meta.zone == zone.name()
                && meta.visits == Some(*size)
                && meta.restricted == objections
                && local_day_files(&files, (lo, hi)).is_some_and(|f| f.digest() == meta.files)
                && buffered.range(lo..=hi).next().is_none();
            if current {
                out.insert(day, stored.clone());
            }
        }
        Ok(out)
    }
}

impl crate::engine::Inner {
    /// Registers `visits` in `ctx` (which has the tenant's `events`, shown in `shown`): per day of
    /// `days.zone`, the stored days of `days.stored`, every other day computed from `events`.
    pub(crate) async fn register_visits(
        &self,
        ctx: &SessionContext,
        tenant: &TenantId,
        shown: chrono_tz::Tz,
        days: &Days,
    ) -> Result<()> {
        let stored = &days.stored;
        let fresh: Vec<&str> = stored.keys().map(String::as_str).collect();
        let day = day_of_event(days.zone, shown);
        let mut filter = format!("strpos($stored, {day}) = 0");
        let mut params = vec![("stored", ScalarValue::Utf8(Some(fresh.join(","))))];
        if day != "date" {
            // The UTC partitions of stored days only are skipped whole (a test on the partition column).
            filter = format!("strpos($covered, date) = 0 AND {filter}");
            let covered = covered_utc_dates(days.zone, stored);
            params.push(("covered", ScalarValue::Utf8(Some(covered))));
        }
        let raw = ctx
            .sql(&visits_sql(&day, &filter))
            .await
            .map_err(Error::from_datafusion)?
            .with_param_values(ParamValues::from(params))
            .map_err(Error::from_datafusion)?;
        let visits = if stored.is_empty() {
            raw
        } else {
            let urls = stored
                .values()
                .map(|p| ListingTableUrl::parse(format!("{}{p}", crate::engine::LAKE_URL)))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::from_datafusion)?;
            let options = ListingOptions::new(Arc::new(self.parquet_format(tenant)?))
                .with_file_extension(VISITS_FILE);
            let table = ListingTable::try_new(
                ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(visits_schema()),
            )
            .map_err(Error::from_datafusion)?;
            ctx.read_table(Arc::new(table))
                .map_err(Error::from_datafusion)?
                .union(raw)
                .map_err(Error::from_datafusion)?
        };
        // The table's types whatever each side read them as (a Parquet string may come as a view).
        let typed = visits_schema()
            .fields()
            .iter()
            .map(|f| {
                datafusion::prelude::cast(datafusion::prelude::col(f.name()), f.data_type().clone())
                    .alias(f.name())
            })
            .collect::<Vec<_>>();
        let visits = visits.select(typed).map_err(Error::from_datafusion)?;
        ctx.register_table("visits", visits.into_view())
            .map_err(Error::from_datafusion)?;
        Ok(())
    }
}
