-- name: overview
-- title: Visitors, visits, page views, views per visit, bounce rate, visit duration, events and crashes
-- params: from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: visitors (distinct visitor ids: visitor-days over a range), visits (30-minute inactivity gap),
--   pageviews, views_per_visit, bounce_rate (share of visits with one page view), visit_seconds (mean
--   first-to-last event time of a visit), events (custom), crashes, suppressed (null, or why the numbers are withheld)
-- k: visitors withhold
-- rollups: visits (days whose raw page views expired are added from the daily rollups, without filters)
WITH {{visits}},
v AS (
    SELECT COUNT(*) AS visits,
        SUM(CASE WHEN pageviews = 1 THEN 1 ELSE 0 END) AS bounces,
        SUM(pageviews) AS visit_pageviews,
        SUM(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) AS visit_ms
    FROM visits
),
e AS (
    SELECT COUNT(DISTINCT visitor_id) AS visitors,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
        COUNT(*) FILTER (WHERE kind = 'event') AS events,
        COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
    FROM scoped
),
r AS (
    SELECT
        COALESCE(SUM(CASE WHEN kind = '*' THEN visitors END), 0) AS visitors,
        COALESCE(SUM(CASE WHEN kind = '*' THEN visits END), 0) AS visits,
        COALESCE(SUM(CASE WHEN kind = '*' THEN bounces END), 0) AS bounces,
        COALESCE(SUM(CASE WHEN kind = '*' THEN visit_pageviews END), 0) AS visit_pageviews,
        COALESCE(SUM(CASE WHEN kind = '*' THEN visit_ms END), 0) AS visit_ms,
        COALESCE(SUM(CASE WHEN kind = 'pageview' THEN events END), 0) AS pageviews,
        COALESCE(SUM(CASE WHEN kind = 'event' THEN events END), 0) AS events,
        COALESCE(SUM(CASE WHEN kind = 'crash' THEN events END), 0) AS crashes
    FROM rollups
    WHERE {{expired}} AND dimension = 'all'
),
t AS (
    SELECT e.visitors + r.visitors AS visitors,
        v.visits + r.visits AS visits,
        COALESCE(v.bounces, 0) + r.bounces AS bounces,
        COALESCE(v.visit_pageviews, 0) + r.visit_pageviews AS visit_pageviews,
        COALESCE(v.visit_ms, 0) + r.visit_ms AS visit_ms,
        e.pageviews + r.pageviews AS pageviews,
        e.events + r.events AS events,
        e.crashes + r.crashes AS crashes
    FROM e CROSS JOIN v CROSS JOIN r
)
SELECT visitors, visits, pageviews,
    ROUND(CAST(visit_pageviews AS DOUBLE) / NULLIF(visits, 0), 2) AS views_per_visit,
    ROUND(CAST(bounces AS DOUBLE) / NULLIF(visits, 0), 4) AS bounce_rate,
    ROUND(CAST(visit_ms AS DOUBLE) / NULLIF(visits, 0) / 1000.0, 1) AS visit_seconds,
    events, crashes
FROM t
