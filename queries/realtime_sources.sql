-- name: realtime_sources
-- title: Where the last 5 minutes' visits come from: referrer class and source
-- params: limit (rows, default 100), the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event,
--   release, fingerprint, source, host); from and to are ignored
-- columns: referrer_class (search, social, email, direct, other), source, visitors, pageviews
-- k: visitors
SELECT referrer_class AS referrer_class, referrer_source AS source, COUNT(DISTINCT visitor_id) AS visitors,
    COUNT(*) AS pageviews
FROM events
WHERE kind = 'pageview' AND referrer_class <> 'internal'
    AND date >= to_char(now() - INTERVAL '1 day', '%Y-%m-%d')
    AND ts >= now() - INTERVAL '5 minutes'
    AND {{filters}}
GROUP BY 1, 2
ORDER BY visitors DESC, pageviews DESC, referrer_class, source
