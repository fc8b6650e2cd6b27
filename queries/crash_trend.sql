-- name: crash_trend
-- title: One crash group day by day
-- params: fingerprint (required), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: day (YYYY-MM-DD in the tenant's time zone), crashes, visitors (affected), suppressed (null, or why the numbers are withheld)
-- k: visitors withhold crashes
-- requires: fingerprint
-- Days whose raw crashes expired answer from the fingerprint's daily rollup (without other filters; each count
-- the larger of raw and rollup, as in `daily`; those days are UTC dates).
WITH {{visits}},
raw AS (
    SELECT {{day}} AS day, COUNT(*) AS crashes, COUNT(DISTINCT visitor_id) AS visitors
    FROM scoped
    WHERE kind = 'crash'
    GROUP BY 1
),
rolled AS (
    SELECT date AS day, SUM(events) AS crashes, SUM(visitors) AS visitors
    FROM rollups
    WHERE {{days}} AND {{no_filters_but_fingerprint}}
        AND kind = 'crash' AND dimension = 'fingerprint' AND tacet_group(value, NULL) = $fingerprint
    GROUP BY date
)
SELECT COALESCE(raw.day, rolled.day) AS day,
    GREATEST(COALESCE(raw.crashes, 0), COALESCE(rolled.crashes, 0)) AS crashes,
    GREATEST(COALESCE(raw.visitors, 0), COALESCE(rolled.visitors, 0)) AS visitors
FROM raw FULL OUTER JOIN rolled ON raw.day = rolled.day
ORDER BY day
