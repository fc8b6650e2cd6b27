-- name: timeseries
-- title: The overview's counts per day or per hour (in the tenant's time zone)
-- params: interval (day or hour; default day), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint)
-- columns: bucket (start of the day or hour in the tenant's time zone), visitors, visits (by the bucket they started in),
--   pageviews, events, crashes
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
)
SELECT e.bucket, e.visitors, COALESCE(v.visits, 0) AS visits, e.pageviews, e.events, e.crashes
FROM e LEFT JOIN v ON e.bucket = v.bucket
ORDER BY e.bucket
