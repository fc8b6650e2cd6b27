//! Daily rollups: per tenant and day (a day of the tenant's zone: `date` is the local date, and a day
//! elsewhere than UTC runs over two UTC dates' partitions), counts of events and distinct visitors by kind, overall and by each
//! report dimension, and the day's visit totals. They hold no pseudonyms, so they may outlive the raw events
//! (their own retention), and the reports answer from them for days whose raw events are gone: `daily` and
//! `crash_trend` (in SQL, each count the larger of raw and rollup);
//! `overview` and `timeseries` (header `-- rollups: visits`: the day's visit totals, bound as `$expired`);
//! and the breakdowns whose header names their rollup (`-- rollups: pageview page`: `pages`, `referrers`,
//! `campaigns`, `browsers`, `operating_systems`, `devices`, `countries`, `events`, `entry_pages`,
//! `exit_pages`), through [`QueryEngine::add_rolled_days`]. Which days: crate::source (expired days, and
//! closed days the rollup provably answers exactly).
//!
//! ```text
//! rollups/tenant=<id>/date=<YYYY-MM-DD>/rollup.parquet
//!   kind       pageview | event | crash | * (all kinds together)
//!   dimension  all | page | referrer_class | referrer_source | browser | os | device | country | event |
//!              fingerprint | utm_source | utm_campaign | country_region | referrer | campaign |
//!              entry_page | exit_page (kind pageview: `events` counts the visits entered or left there)
//!   value      the dimension's value (null for `all`, or when the events had none); for a dimension of
//!   value2,    several columns (`country_region`: country, region; `referrer`: class, source, host of
//!   value3     page views not internal; `campaign`: utm source, medium, campaign where a source is set)
//!              the second and third
//!   events     events of that kind with that value
//!   visitors   distinct visitor ids among them (exact for the row; rows do not add up)
//!   visits, bounces, visit_pageviews, visit_ms
//!              on the row (`*`, `all`) only: the day's visits (30-minute gap, as in the reports), those
//!              with one page view, the page views in visits, and the sum of their first-to-last times
//!
//! rollups/tenant=<id>/date=<YYYY-MM-DD>/filters.parquet
//!   the same columns, computed over the day's events with one value of one filter (ROLLED_FILTERS), for
//!   the dimensions the rolled breakdowns read, visits and entry and exit pages included (the visit window
//!   is partitioned by the value: a filtered report's visit is a run of the visitor's events with it), then
//!   filter        the parameter (`page`, `country`, `browser`, `referrer_class`, `utm_source`)
//!   filter_value  its value (rows exist for values the day's events had)
//! ```
//! Files written before a column existed read it as null. SQL's `rollups` table is the `rollup.parquet`
//! files; `filters.parquet` is read by the planner's answering path only (a report with that one filter).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::common::{ParamValues, ScalarValue};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tacet_model::TenantId;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;

pub use crate::footer::{FILTERS_FILE, ROLLED_FILTERS, ROLLUP_FILE, ROLLUP_ROOT, rollup_prefix};

use crate::engine::{QueryOutput, Run};
use crate::report::ReportParams;
use crate::{Error, QueryEngine, Result};

/// A dimension rolled up: its name in the rollup, the `events` columns it groups by (one to three: `value`,
/// `value2`, `value3`), and which events it counts.
pub struct Dimension {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub only: &'static str,
}

const fn dim(name: &'static str, columns: &'static [&'static str]) -> Dimension {
    Dimension {
        name,
        columns,
        only: "TRUE",
    }
}

/// The dimensions rolled up. The composite ones have the exact shape of a report (`countries`,
/// `referrers`, `campaigns`), so that report can add them for days whose raw events expired.
pub const DIMENSIONS: &[Dimension] = &[
    dim("page", &["url_path"]),
    dim("referrer_class", &["referrer_class"]),
    dim("referrer_source", &["referrer_source"]),
    dim("browser", &["browser"]),
    dim("os", &["os"]),
    dim("device", &["device"]),
    dim("country", &["country"]),
    dim("event", &["name"]),
    dim("fingerprint", &["fingerprint"]),
    dim("utm_source", &["utm_source"]),
    dim("utm_campaign", &["utm_campaign"]),
    dim("country_region", &["country", "region"]),
    Dimension {
        name: "referrer",
        columns: &["referrer_class", "referrer_source", "referrer_host"],
        only: "referrer_class <> 'internal'",
    },
    Dimension {
        name: "campaign",
        columns: &["utm_source", "utm_medium", "utm_campaign"],
        only: "utm_source IS NOT NULL",
    },
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("value2", DataType::Utf8, true),
        Field::new("value3", DataType::Utf8, true),
        Field::new("events", DataType::Int64, false),
        Field::new("visitors", DataType::Int64, false),
        Field::new("visits", DataType::Int64, true),
        Field::new("bounces", DataType::Int64, true),
        Field::new("visit_pageviews", DataType::Int64, true),
        Field::new("visit_ms", DataType::Int64, true),
    ]))
});

/// The schema of a rollup file (the `date` partition column is in the path).
pub fn rollup_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The dimensions rolled per filter value: those the rolled breakdowns read (`entry_page` and `exit_page`,
/// and the `all` rows, always are).
const FILTERED_DIMENSIONS: &[&str] = &[
    "page",
    "browser",
    "os",
    "device",
    "event",
    "country_region",
    "referrer",
    "campaign",
];

static FILTERED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = SCHEMA.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("filter", DataType::Utf8, false));
    fields.push(Field::new("filter_value", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
});

/// The schema of a day's `filters.parquet`: a rollup's columns, then the filter (a parameter name of
/// [`ROLLED_FILTERS`]) and its value; each row counts only the day's events with that value.
pub fn filtered_schema() -> SchemaRef {
    FILTERED_SCHEMA.clone()
}

/// The `events` column a filter parameter compares.
fn filter_column(name: &str) -> &'static str {
    crate::report::FILTERS
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, column)| *column)
        .expect("a rolled filter is a report filter")
}

/// The SQL of a day's rollup (`filter` None) or of its rows per value of one filter: every count as the
/// reports compute it over the day's events with that value, visits included (a visit of a filtered report
/// is a run of the visitor's events *with that value*, so the visit window is partitioned by it too).
fn rollup_sql(filter: Option<&str>) -> String {
    let (value, only, named) = match filter {
        None => (
            "CAST(NULL AS VARCHAR)".to_owned(),
            "TRUE".to_owned(),
            String::new(),
        ),
        Some(name) => {
            let column = filter_column(name);
            (
                format!("CAST({column} AS VARCHAR)"),
                format!("{column} IS NOT NULL"),
                format!(", '{name}' AS filter, filter_value"),
            )
        }
    };
    let counts = format!(
        "CAST(COUNT(*) AS BIGINT) AS events, CAST({}(visitor_id) AS BIGINT) AS visitors",
        crate::distinct::NAME
    );
    let no_visits = "CAST(NULL AS BIGINT) AS visits, CAST(NULL AS BIGINT) AS bounces, \
                     CAST(NULL AS BIGINT) AS visit_pageviews, CAST(NULL AS BIGINT) AS visit_ms";
    let values = |columns: &[&str]| {
        (0..3)
            .map(|i| {
                let name = ["value", "value2", "value3"][i];
                match columns.get(i) {
                    Some(c) => format!("CAST({c} AS VARCHAR) AS {name}"),
                    None => format!("CAST(NULL AS VARCHAR) AS {name}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let none = values(&[]);
    let mut parts = vec![
        // The day's visits, as the reports define them (crate::report::VISITS), on the (`*`, `all`) row.
        format!(
            "SELECT '*' AS kind, 'all' AS dimension, {none}, e.events, e.visitors, \
             COALESCE(v.visits, 0) AS visits, COALESCE(v.bounces, 0) AS bounces, \
             COALESCE(v.visit_pageviews, 0) AS visit_pageviews, COALESCE(v.visit_ms, 0) AS visit_ms{} \
             FROM (SELECT filter_value, {counts} FROM day GROUP BY filter_value) e \
             LEFT JOIN v ON e.filter_value IS NOT DISTINCT FROM v.filter_value",
            named.replace(" filter_value", " e.filter_value")
        ),
        format!(
            "SELECT kind, 'all' AS dimension, {none}, {counts}, {no_visits}{named} \
             FROM day GROUP BY filter_value, kind"
        ),
    ];
    // Entry and exit pages, as `entry_pages` and `exit_pages` define them: the first and last page view of
    // each of the day's visits, with the visits (`events`) and distinct visitors they had.
    for (name, edge) in [("entry_page", "before_no"), ("exit_page", "after_no")] {
        parts.push(format!(
            "SELECT 'pageview' AS kind, '{name}' AS dimension, CAST(url_path AS VARCHAR) AS value, \
             CAST(NULL AS VARCHAR) AS value2, CAST(NULL AS VARCHAR) AS value3, {counts}, {no_visits}{named} \
             FROM edges WHERE {edge} IS DISTINCT FROM visit_no GROUP BY filter_value, url_path"
        ));
    }
    for d in DIMENSIONS
        .iter()
        .filter(|d| filter.is_none() || FILTERED_DIMENSIONS.contains(&d.name))
    {
        parts.push(format!(
            "SELECT kind, '{}' AS dimension, {}, {counts}, {no_visits}{named} \
             FROM day WHERE {} GROUP BY filter_value, kind, {}",
            d.name,
            values(d.columns),
            d.only,
            d.columns.join(", ")
        ));
    }
    // The visit window of the reports (crate::report::VISIT_WINDOW), within each filter value.
    let window = format!(
        "PARTITION BY filter_value, {}",
        crate::report::VISIT_WINDOW
            .strip_prefix("PARTITION BY ")
            .expect("the visit window is partitioned")
    );
    format!(
        "WITH day AS (
    SELECT *, {value} AS filter_value FROM events WHERE {DAY_EVENTS} AND {only}
),
tagged AS (
    SELECT *, tacet_visit(visitor_id, ts) OVER ({window}) AS visit_no
    FROM (SELECT *, visitor_id % 64 AS visit_bucket FROM day)
),
visits AS (
    SELECT filter_value, visitor_id, visit_no, MIN(ts) AS started, MAX(ts) AS ended,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews
    FROM tagged
    WHERE visitor_id IS NOT NULL
    GROUP BY filter_value, visitor_id, visit_no
),
edges AS (
    SELECT filter_value, url_path, visitor_id, visit_no,
        tacet_prev(visit_no) OVER ({window}) AS before_no,
        tacet_next(visit_no) OVER ({window}) AS after_no
    FROM tagged
    WHERE kind = 'pageview' AND visitor_id IS NOT NULL
),
v AS (
    SELECT filter_value, CAST(COUNT(*) AS BIGINT) AS visits,
        CAST(COALESCE(SUM(CASE WHEN pageviews = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS bounces,
        CAST(COALESCE(SUM(pageviews), 0) AS BIGINT) AS visit_pageviews,
        CAST(COALESCE(SUM(CAST(ended AS BIGINT) - CAST(started AS BIGINT)), 0) AS BIGINT) AS visit_ms
    FROM visits
    GROUP BY filter_value
)
SELECT * FROM ({}) WHERE events > 0 ORDER BY {}kind, dimension, value, value2, value3",
        parts.join(" UNION ALL "),
        if filter.is_some() { "filter_value, " } else { "" },
    )
}

/// A rollup's events: those of one day of the tenant's zone, `[$start, $end)`, in the partitions of the UTC
/// dates it runs over (`$lo` to `$hi`: one date in UTC).
const DAY_EVENTS: &str = "date >= $lo AND date <= $hi AND ts >= $start AND ts < $end";

impl QueryEngine {
    /// Computes the rollup of one tenant's day (a day of `zone`, the tenant's: the days its reports show and
    /// its visitor salt rotates with) from its raw events (and any still buffered) and writes it, replacing
    /// an earlier one; returns its row count. A day without events writes nothing.
    ///
    /// Its footer records what the report planner (crate::source) needs to trust it for a closed day: the
    /// zone, the digest of the files of the day's UTC dates and of the objections it was computed with (taken
    /// before it runs, so a flush meanwhile makes it look stale, never fresh), and how many of the day's
    /// visitor ids were also seen on another day within [`crate::source::ID_WINDOW_DAYS`].
    pub async fn rollup_day(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
        zone: chrono_tz::Tz,
    ) -> Result<usize> {
        let text = day.format("%Y-%m-%d").to_string();
        let (lo, hi) = crate::report::utc_dates(zone, day);
        let listed = crate::footer::raw_files_by_day(self.store(), tenant).await?;
        let files = crate::footer::local_day_files(&listed, (lo, hi))
            .map(|f| f.digest())
            .unwrap_or_default();
        let near = crate::footer::near_digests(&listed, (lo, hi));
        let restricted = self.restricted_now(tenant)?;
        let complete = self.rollup_is_complete(zone, day);
        let day_of = |d: NaiveDate| ScalarValue::Utf8(Some(d.format("%Y-%m-%d").to_string()));
        // `ts` as the session shows it without a zone (crate::engine).
        let instant = |ms: i64| {
            ScalarValue::TimestampMillisecond(Some(ms), Some(tacet_model::schema::TS_TZ.into()))
        };
        let bounds = vec![
            ("lo", day_of(lo)),
            ("hi", day_of(hi)),
            ("start", instant(crate::report::local_midnight(zone, day))),
            (
                "end",
                instant(crate::report::local_midnight(
                    zone,
                    day + chrono::Days::new(1),
                )),
            ),
        ];
        let params = || ParamValues::from(bounds.clone());
        let out = self
            .run_with_limit(tenant, &rollup_sql(None), Some(params()), local_run())
            .await?;
        let rows = out.num_rows();
        if rows == 0 {
            return Ok(0);
        }
        let mut filtered = Vec::new();
        for name in ROLLED_FILTERS {
            let out = self
                .run_with_limit(tenant, &rollup_sql(Some(name)), Some(params()), local_run())
                .await?;
            filtered.extend(out.batches);
        }
        let window = chrono::Days::new(u64::from(crate::source::ID_WINDOW_DAYS));
        let mut around = bounds.clone();
        around.push(("near_lo", day_of(lo - window)));
        around.push(("near_hi", day_of(hi + window)));
        let shared = self
            .run_with_limit(
                tenant,
                &format!(
                    "SELECT CAST(COUNT(DISTINCT visitor_id) AS BIGINT) AS shared FROM events \
                     WHERE date >= $near_lo AND date <= $near_hi AND (ts < $start OR ts >= $end) \
                     AND visitor_id IN \
                     (SELECT visitor_id FROM events WHERE {DAY_EVENTS} AND visitor_id IS NOT NULL)"
                ),
                Some(ParamValues::from(around)),
                local_run(),
            )
            .await?;
        let shared = shared
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                arrow::compute::cast(b.column(0), &DataType::Int64)
                    .ok()
                    .map(|c| c.as_primitive::<Int64Type>().value(0))
            })
            .unwrap_or(0);
        // The day's visits (crate::visits), written first: the rollup's footer names the file by its size.
        let mut with_day = bounds.clone();
        with_day.push(("day", day_of(day)));
        let visits = self
            .run_with_limit(
                tenant,
                &crate::visits::day_sql(DAY_EVENTS),
                Some(ParamValues::from(with_day)),
                local_run(),
            )
            .await?;
        let (visits_path, visits_size) = self.write_visits(tenant, &text, &visits.batches).await?;
        let computed_from = files.clone();
        let footer = vec![
            (
                crate::footer::META_VISITS.to_owned(),
                visits_size.to_string(),
            ),
            (crate::footer::META_FILES.to_owned(), files),
            (crate::footer::META_RESTRICTED.to_owned(), restricted),
            (crate::footer::META_SHARED.to_owned(), shared.to_string()),
            (crate::footer::META_NEAR.to_owned(), near),
            (
                crate::footer::META_COMPLETE.to_owned(),
                complete.to_string(),
            ),
            (crate::footer::META_ZONE.to_owned(), zone.name().to_owned()),
        ];
        // The filters' rows first: a day's `rollup.parquet` is written last, so a reader that finds it
        // current finds its `filters.parquet` beside it from the same run (both footers say the same).
        let dir = format!("{}date={text}/", rollup_prefix(tenant));
        let parts = [
            (FILTERS_FILE, filtered_schema(), filtered),
            (ROLLUP_FILE, rollup_schema(), out.batches),
        ];
        for (name, schema, batches) in parts {
            let bytes = crate::format::to_parquet_with(
                &schema,
                &crate::format::conform(&schema, &batches)
                    .map_err(|e| Error::Internal(format!("rollup batch: {e}")))?,
                footer.clone(),
            )
            .map_err(|e| Error::Internal(format!("encoding a rollup: {e}")))?;
            let path = Path::from(format!("{dir}{name}"));
            self.store()
                .put(&path, bytes.into())
                .await
                .map_err(|e| Error::Internal(format!("writing {path}: {e}")))?;
        }
        // An erasure that rewrote the day meanwhile deleted the day's visits before this run wrote its own
        // (computed from the rows before): those must not stay. Listed after writing, so either the erasure
        // deletes this file or this check sees its rewrite.
        let now = crate::footer::raw_files_by_day(self.store(), tenant).await?;
        let now = crate::footer::local_day_files(&now, (lo, hi))
            .map(|f| f.digest())
            .unwrap_or_default();
        if now != computed_from {
            self.store()
                .delete(&visits_path)
                .await
                .map_err(|e| Error::Internal(format!("deleting {visits_path}: {e}")))?;
        }
        Ok(rows)
    }
}

/// A query of the rollups' own: on this process's session (with the ingestion buffer, which a Ballista
/// session leaves out), every row.
fn local_run() -> Run {
    Run {
        max_rows: usize::MAX,
        unrestricted: false,
        tables: Vec::new(),
        local: true,
        zone: None,
        batch_rows: crate::engine::DEFAULT_BATCH_ROWS,
        client_sql: false,
        groups: None,
        postgres: None,
        visits: None,
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("adding rollups to a breakdown: {e}"))
}

impl QueryEngine {
    /// A report's rows before its k-threshold, from the sources `source` planned: the raw query over the
    /// days not rolled (left out when there are none and the report's schema is known), with the rolled
    /// days' rollups, in SQL as the table `rollups` (`-- rollups: visits`: from the rollup cache, in memory,
    /// on the local session) or added after (breakdowns, [`QueryEngine::add_rolled_days`]).
    pub(crate) async fn answer(
        &self,
        tenant: &TenantId,
        report: &crate::Report,
        params: &ReportParams,
        scope: &crate::ReportScope,
        source: &crate::source::ReportSource,
    ) -> Result<QueryOutput> {
        let breakdown = report.rollup();
        let known = self
            .inner
            .report_schemas
            .lock()
            .expect("schema lock")
            .get(report.name)
            .cloned();
        // Every day rolled: a breakdown's rows are the rollups'; its columns are the only thing the raw
        // query is for, planned (not run) the first time and remembered.
        let rolled_only = breakdown.is_some() && !source.needs_raw;
        let mut tables = Vec::new();
        if report.rollup_visits() && !self.distributed() {
            let all = BTreeSet::from(["all"]);
            let rows = self
                .rollup_rows(&source.files, &all, source.filter.as_ref())
                .await?;
            tables.push(("rollups", rows));
        }
        let sql = report.expanded_sql_for(scope.zone, params.filters.contains_key("event"));
        let bound = crate::report::bind(
            params,
            scope.zone,
            &source.rolled_csv(),
            source.filter.is_some() && !self.distributed(),
        );
        let run = Run {
            max_rows: self.inner.config.max_rows,
            unrestricted: false,
            tables,
            // The cluster knows `tacet_group` as the identity only: a tenant's own merges and splits run
            // here.
            local: !report.distributed() || !scope.groups.is_empty(),
            zone: Some(scope.zone),
            batch_rows: crate::engine::REPORT_BATCH_ROWS,
            client_sql: false,
            groups: Some(Arc::clone(&scope.groups)),
            postgres: None,
            visits: None,
        };
        let out = if rolled_only {
            let schema = match known {
                Some(schema) => schema,
                None => {
                    self.inner
                        .plan_schema(tenant, &sql, Some(bound), run)
                        .await?
                }
            };
            QueryOutput {
                schema,
                batches: Vec::new(),
                truncated: false,
                suppressed: 0,
                source: None,
            }
        } else {
            self.run_with_limit(tenant, &sql, Some(bound), run).await?
        };
        self.inner
            .report_schemas
            .lock()
            .expect("schema lock")
            .insert(report.name, Arc::clone(&out.schema));
        match breakdown {
            Some((kind, dimension)) => self.add_rolled_days(&kind, &dimension, source, out).await,
            None => Ok(out),
        }
    }

    /// A breakdown (one to three values, distinct visitors, count) over the days read raw, with the rollups
    /// of the days `rolled` names (crate::source: expired, or closed and provably up to date) added: rollups
    /// count each day's distinct visitors and the planner only rolls days none of whose visitor ids is on
    /// another day, so the sum is exact. With a filter, the rolled days' rows of that filter's value.
    pub(crate) async fn add_rolled_days(
        &self,
        kind: &str,
        dimension: &str,
        source: &crate::source::ReportSource,
        out: QueryOutput,
    ) -> Result<QueryOutput> {
        if source.rolled.is_empty() {
            return Ok(out);
        }
        let width = out.schema.fields().len().saturating_sub(2);
        if !(1..=3).contains(&width) {
            return Err(internal(
                "the report's columns are not (values, visitors, count)",
            ));
        }
        // The rolled days' rows of the dimension, through the rollup cache (crate::rollup_files).
        let rolled = self
            .rollup_rows(
                &source.rolled_files(),
                &BTreeSet::from([dimension]),
                source.filter.as_ref(),
            )
            .await?;
        // values → (visitors, count)
        type Key = Vec<Option<String>>;
        let mut merged: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
        let strings = |a: &Arc<dyn Array>| -> Result<StringArray> {
            Ok(arrow::compute::cast(a, &DataType::Utf8)
                .map_err(internal)?
                .as_string::<i32>()
                .clone())
        };
        let ints = |a: &Arc<dyn Array>| -> Result<Int64Array> {
            Ok(arrow::compute::cast(a, &DataType::Int64)
                .map_err(internal)?
                .as_primitive::<Int64Type>()
                .clone())
        };
        let key = |values: &[StringArray], i: usize| -> Key {
            values
                .iter()
                .map(|v| v.is_valid(i).then(|| v.value(i).to_owned()))
                .collect()
        };
        for b in &out.batches {
            let values = (0..width)
                .map(|c| strings(b.column(c)))
                .collect::<Result<Vec<_>>>()?;
            let (visitors, count) = (ints(b.column(width))?, ints(b.column(width + 1))?);
            for i in 0..b.num_rows() {
                let e = merged.entry(key(&values, i)).or_default();
                e.0 += visitors.value(i);
                e.1 += count.value(i);
            }
        }
        {
            // kind, dimension, value, value2, value3, events, visitors, …
            let b = &rolled;
            let kinds = strings(b.column(0))?;
            let values = (2..2 + width)
                .map(|c| strings(b.column(c)))
                .collect::<Result<Vec<_>>>()?;
            let (count, visitors) = (ints(b.column(5))?, ints(b.column(6))?);
            for i in 0..b.num_rows() {
                if kinds.value(i) != kind {
                    continue;
                }
                let e = merged.entry(key(&values, i)).or_default();
                e.0 += visitors.value(i);
                e.1 += count.value(i);
            }
        }
        // The reports' order: visitors, then the count, descending; then the values (nulls last).
        let mut rows: Vec<(Key, (i64, i64))> = merged.into_iter().collect();
        let nulls_last = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a.cmp(b),
            (a, b) => a.is_none().cmp(&b.is_none()),
        };
        rows.sort_by(|(a, (av, ac)), (b, (bv, bc))| {
            bv.cmp(av).then(bc.cmp(ac)).then_with(|| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| nulls_last(x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
        let schema = out.schema.clone();
        let mut columns: Vec<Arc<dyn Array>> = (0..width)
            .map(|c| {
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|(v, _)| v[c].as_deref()),
                )) as Arc<dyn Array>
            })
            .collect();
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, (v, _))| *v),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, (_, c))| *c),
        )));
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(internal)?;
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(internal)?;
        Ok(QueryOutput {
            schema,
            batches: vec![batch],
            truncated: out.truncated,
            suppressed: out.suppressed,
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_covers_every_dimension() {
        let sqls: Vec<(Option<&str>, String)> = std::iter::once(None)
            .chain(ROLLED_FILTERS.iter().map(|f| Some(*f)))
            .map(|f| (f, rollup_sql(f)))
            .collect();
        for (filter, sql) in &sqls {
            for d in DIMENSIONS {
                let rolled = sql.contains(&format!(
                    "'{}' AS dimension, CAST({} AS VARCHAR) AS value,",
                    d.name, d.columns[0]
                )) && sql.contains(&format!(
                    "GROUP BY filter_value, kind, {}",
                    d.columns.join(", ")
                ));
                assert_eq!(
                    rolled,
                    filter.is_none() || FILTERED_DIMENSIONS.contains(&d.name),
                    "{filter:?} {}",
                    d.name
                );
            }
            // Pseudonyms are only counted: the visits CTE groups by visitor id, the rows written never
            // hold one.
            let written = sql.split("SELECT * FROM (").nth(1).unwrap();
            assert!(!sql.contains("user_pseudonym") && !written.contains("SELECT visitor_id"));
        }
        // Every dimension a rolled breakdown reads has rows per filter value.
        for r in crate::REPORTS {
            if let Some((_, dimension)) = r.rollup() {
                assert!(
                    FILTERED_DIMENSIONS.contains(&dimension.as_str())
                        || ["entry_page", "exit_page"].contains(&dimension.as_str()),
                    "{}",
                    r.name
                );
            }
        }
        for f in filtered_schema().fields() {
            assert!(!f.name().contains("visitor_id") && !f.name().contains("pseudonym"));
        }
    }
}
