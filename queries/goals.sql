-- name: goals
-- title: Goal conversions: every custom event as a goal, with the share of visitors who reached it
-- params: limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: goal (event name), visitors (who reached it), conversions (events), conversion_rate (visitors
--   over all visitors of the range)
-- k: visitors
WITH {{visits}},
everyone AS (SELECT COUNT(DISTINCT visitor_id) AS n FROM scoped)
SELECT name AS goal, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS conversions,
    ROUND(CAST(COUNT(DISTINCT visitor_id) AS DOUBLE) / NULLIF(MAX(everyone.n), 0), 4) AS conversion_rate
FROM scoped CROSS JOIN everyone
WHERE kind = 'event'
GROUP BY name
ORDER BY visitors DESC, conversions DESC, goal
