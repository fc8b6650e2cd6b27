-- name: daily
-- title: Daily visitors, page views, custom events and crashes
-- params: from (YYYY-MM-DD, inclusive; default: 29 days before `to`), to (YYYY-MM-DD, inclusive; default: today, UTC),
--   the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release, fingerprint)
-- columns: day (YYYY-MM-DD, UTC), visitors (distinct visitor ids; ids rotate daily, so a day is the widest
--          window in which a visitor is counted once), pageviews, events (custom), crashes
SELECT
    date AS day,
    COUNT(DISTINCT visitor_id) AS visitors,
    COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
    COUNT(*) FILTER (WHERE kind = 'event') AS events,
    COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
FROM events
WHERE {{range}} AND {{filters}}
GROUP BY date
ORDER BY date
