-- name: events
-- title: Custom events by visitors
-- params: limit (rows, default 100), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: event (name), visitors, events
-- k: visitors
-- rollups: event event (days whose raw custom events expired are added from the daily rollups, without filters)
WITH {{visits}}
SELECT name AS event, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS events
FROM scoped
WHERE kind = 'event'
GROUP BY 1
ORDER BY visitors DESC, events DESC, event
