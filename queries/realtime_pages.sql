-- name: realtime_pages
-- title: Pages viewed in the last 5 minutes, most visitors first
-- params: limit (rows, default 100), the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event,
--   release, fingerprint, source, host); from and to are ignored
-- columns: page (path), visitors, pageviews
-- k: visitors
SELECT url_path AS page, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS pageviews
FROM events
WHERE kind = 'pageview'
    AND date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
    AND ts >= now() - INTERVAL '5 minutes'
    AND {{filters}}
GROUP BY 1
ORDER BY visitors DESC, pageviews DESC, page
