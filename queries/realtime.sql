-- name: realtime
-- title: The last 30 minutes, minute by minute (over HTTP, events not yet written to Parquet too; the CLI reads
--   Parquet only, a flush interval behind)
-- params: the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event,
--   release, fingerprint, source, host); from and to are ignored
-- columns: minute (in the tenant's time zone), visitors, pageviews, events, crashes, suppressed (null, or why the numbers are withheld)
-- k: visitors withhold
SELECT date_trunc('minute', ts) AS minute,
    COUNT(DISTINCT visitor_id) AS visitors,
    COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
    COUNT(*) FILTER (WHERE kind = 'event') AS events,
    COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
FROM events
WHERE date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
    AND ts >= now() - INTERVAL '30 minutes'
    AND {{filters}}
GROUP BY 1
ORDER BY 1
