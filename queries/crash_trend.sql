-- name: crash_trend
-- title: One crash group day by day
-- params: fingerprint (required), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint)
-- columns: day (YYYY-MM-DD in the tenant's time zone), crashes, visitors (affected)
-- requires: fingerprint
WITH {{visits}}
SELECT {{day}} AS day, COUNT(*) AS crashes, COUNT(DISTINCT visitor_id) AS visitors
FROM scoped
WHERE kind = 'crash'
GROUP BY 1
ORDER BY 1
