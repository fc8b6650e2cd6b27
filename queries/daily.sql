-- name: daily
-- title: Daily visitors, page views, custom events and crashes (from the daily rollups where raw events have expired)
-- params: from (YYYY-MM-DD, inclusive; default: 29 days before `to`), to (YYYY-MM-DD, inclusive; default: today, UTC),
--   the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release,
--   fingerprint; with a filter, only days with raw events answer)
-- columns: day (YYYY-MM-DD, UTC), visitors (distinct visitor ids; ids rotate daily, so a day is the widest
--          window in which a visitor is counted once), pageviews, events (custom), crashes
WITH raw AS (
    SELECT
        date AS day,
        COUNT(DISTINCT visitor_id) AS visitors,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
        COUNT(*) FILTER (WHERE kind = 'event') AS events,
        COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
    FROM events
    WHERE {{range}} AND {{filters}}
    GROUP BY date
),
rolled AS (
    SELECT
        date AS day,
        COALESCE(MAX(CASE WHEN kind = '*' THEN visitors END), 0) AS visitors,
        COALESCE(MAX(CASE WHEN kind = 'pageview' THEN events END), 0) AS pageviews,
        COALESCE(MAX(CASE WHEN kind = 'event' THEN events END), 0) AS events,
        COALESCE(MAX(CASE WHEN kind = 'crash' THEN events END), 0) AS crashes
    FROM rollups
    WHERE {{range}} AND {{no_filters}} AND dimension = 'all' AND date NOT IN (SELECT day FROM raw)
    GROUP BY date
)
SELECT day, visitors, pageviews, events, crashes FROM raw
UNION ALL
SELECT day, visitors, pageviews, events, crashes FROM rolled
ORDER BY day
