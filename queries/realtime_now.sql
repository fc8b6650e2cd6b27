-- name: realtime_now
-- title: Right now: visitors and page views in the last 5 minutes (over HTTP, events not yet written to
--   Parquet too)
-- params: the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event,
--   release, fingerprint, source, host); from and to are ignored
-- columns: visitors, pageviews, suppressed (null, or why the numbers are withheld)
-- k: visitors withhold
SELECT COUNT(DISTINCT visitor_id) AS visitors,
    COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews
FROM events
WHERE date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
    AND ts >= now() - INTERVAL '5 minutes'
    AND {{filters}}
