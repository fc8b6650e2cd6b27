-- name: daily
-- title: Daily visitors, page views, custom events and crashes (from the daily rollups where raw events have expired)
-- (where a day has both, each count is the larger: raw events may outnumber an earlier rollup (late arrivals), and a
-- rollup outnumbers raw events once a kind's partition expired or a person's rows were erased)
-- params: from (YYYY-MM-DD, inclusive; default: 29 days before `to`), to (YYYY-MM-DD, inclusive; default: today in the tenant's time zone),
--   the filters (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release,
--   fingerprint; with one of page, country, browser, referrer_class, utm_source, days come from that filter's
--   rollup rows as without a filter; with any other, or two, only days with raw events answer)
-- columns: day (YYYY-MM-DD in the tenant's time zone, from rollups too), visitors (distinct visitor ids; ids rotate daily, so a day is the widest
--          window in which a visitor is counted once), pageviews, events (custom), crashes, suppressed (null, or why the numbers are withheld)
-- k: visitors withhold
-- rollups: visits (closed days the planner trusts and days whose raw events expired come from the daily rollups)
WITH raw AS (
    SELECT
        {{day}} AS day,
        COUNT(DISTINCT visitor_id) AS visitors,
        COUNT(*) FILTER (WHERE kind = 'pageview') AS pageviews,
        COUNT(*) FILTER (WHERE kind = 'event') AS events,
        COUNT(*) FILTER (WHERE kind = 'crash') AS crashes
    FROM events
    WHERE {{range}} AND {{filters}} AND {{live}}
    GROUP BY 1
),
rolled AS (
    SELECT
        date AS day,
        COALESCE(MAX(CASE WHEN kind = '*' THEN visitors END), 0) AS visitors,
        COALESCE(MAX(CASE WHEN kind = 'pageview' THEN events END), 0) AS pageviews,
        COALESCE(MAX(CASE WHEN kind = 'event' THEN events END), 0) AS events,
        COALESCE(MAX(CASE WHEN kind = 'crash' THEN events END), 0) AS crashes
    FROM rollups
    WHERE {{days}} AND ({{no_filters}} OR $filtered_rollups) AND dimension = 'all'
    GROUP BY date
)
-- Kinds expire at different ages (crashes first): for a day with both, each count is the larger of the raw
-- events left and the rollup written before any of that day's partitions was dropped.
SELECT
    COALESCE(raw.day, rolled.day) AS day,
    GREATEST(COALESCE(raw.visitors, 0), COALESCE(rolled.visitors, 0)) AS visitors,
    GREATEST(COALESCE(raw.pageviews, 0), COALESCE(rolled.pageviews, 0)) AS pageviews,
    GREATEST(COALESCE(raw.events, 0), COALESCE(rolled.events, 0)) AS events,
    GREATEST(COALESCE(raw.crashes, 0), COALESCE(rolled.crashes, 0)) AS crashes
FROM raw FULL OUTER JOIN rolled ON raw.day = rolled.day
ORDER BY day
