-- name: overview
-- title: Visitors, visits, page views, views per visit, bounce rate, visit duration, events and crashes
-- params: from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint)
-- columns: visitors (distinct visitor ids: visitor-days over a range), visits (30-minute inactivity gap),
--   pageviews, views_per_visit, bounce_rate (share of visits with one page view), visit_seconds (mean
--   first-to-last event time of a visit), events (custom), crashes
WITH {{visits}},
v AS (
    SELECT COUNT(*) AS visits,
        SUM(CASE WHEN pageviews = 1 THEN 1 ELSE 0 END) AS bounces,
        SUM(pageviews) AS visit_pageviews,
        AVG(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) AS mean_ms
    FROM visits
),
e AS (
    SELECT COUNT(DISTINCT visitor_id) AS visitors,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
        COUNT(*) FILTER (WHERE kind = 'event') AS events,
        COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
    FROM scoped
)
SELECT e.visitors, v.visits, e.pageviews,
    ROUND(CAST(v.visit_pageviews AS DOUBLE) / NULLIF(v.visits, 0), 2) AS views_per_visit,
    ROUND(CAST(v.bounces AS DOUBLE) / NULLIF(v.visits, 0), 4) AS bounce_rate,
    ROUND(v.mean_ms / 1000.0, 1) AS visit_seconds,
    e.events, e.crashes
FROM e CROSS JOIN v
