-- name: timeseries
-- title: The overview's counts per day or per hour (in the tenant's time zone)
-- params: interval (day or hour; default day), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: bucket (start of the day or hour in the tenant's time zone), visitors, visits (by the bucket they started in),
--   pageviews, events, crashes, suppressed (null, or why the numbers are withheld)
-- k: visitors withhold
-- rollups: visits (with interval=day, days whose raw page views expired come from the daily rollups, without filters)
WITH {{visits}},
b AS (
    SELECT CASE WHEN $interval = 'hour' THEN date_trunc('hour', ts) ELSE date_trunc('day', ts) END AS bucket,
        visitor_id, kind
    FROM scoped
),
e AS (
    SELECT bucket, COUNT(DISTINCT visitor_id) AS visitors,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
        COUNT(*) FILTER (WHERE kind = 'event') AS events,
        COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
    FROM b GROUP BY bucket
),
v AS (
    SELECT CASE WHEN $interval = 'hour' THEN date_trunc('hour', started) ELSE date_trunc('day', started) END AS bucket,
        COUNT(*) AS visits
    FROM visits GROUP BY 1
),
raw AS (
    SELECT e.bucket, e.visitors, COALESCE(v.visits, 0) AS visits, e.pageviews, e.events, e.crashes
    FROM e LEFT JOIN v ON e.bucket = v.bucket
),
rolled AS (
    SELECT {{midnight}} AS bucket,
        SUM(CASE WHEN kind = '*' THEN visitors ELSE 0 END) AS visitors,
        SUM(CASE WHEN kind = '*' THEN visits ELSE 0 END) AS visits,
        SUM(CASE WHEN kind = 'pageview' THEN events ELSE 0 END) AS pageviews,
        SUM(CASE WHEN kind = 'event' THEN events ELSE 0 END) AS events,
        SUM(CASE WHEN kind = 'crash' THEN events ELSE 0 END) AS crashes
    FROM rollups
    WHERE {{expired}} AND $interval = 'day' AND dimension = 'all'
    GROUP BY date
)
-- A join, not UNION ALL (which Ballista 55 mis-runs, see funnel.sql). A non-UTC tenant's local day can
-- have both: the raw events of the UTC date next to an expired one.
SELECT COALESCE(raw.bucket, rolled.bucket) AS bucket,
    CAST(COALESCE(raw.visitors, 0) + COALESCE(rolled.visitors, 0) AS BIGINT) AS visitors,
    CAST(COALESCE(raw.visits, 0) + COALESCE(rolled.visits, 0) AS BIGINT) AS visits,
    CAST(COALESCE(raw.pageviews, 0) + COALESCE(rolled.pageviews, 0) AS BIGINT) AS pageviews,
    CAST(COALESCE(raw.events, 0) + COALESCE(rolled.events, 0) AS BIGINT) AS events,
    CAST(COALESCE(raw.crashes, 0) + COALESCE(rolled.crashes, 0) AS BIGINT) AS crashes
FROM raw FULL OUTER JOIN rolled ON raw.bucket = rolled.bucket
ORDER BY bucket
