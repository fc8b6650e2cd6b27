-- name: release_health
-- title: Crash-free visits and visitors per release
-- params: from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: release, visits (visits with an event of the release), crash_free_visits (share), visitors,
--   crash_free_visitors (share)
-- k: visitors
WITH {{visits}},
r AS (
    SELECT release, visitor_id, visit_no, MAX(CASE WHEN kind = 'crash' THEN 1 ELSE 0 END) AS crashed
    FROM tagged
    WHERE release IS NOT NULL AND visitor_id IS NOT NULL
    GROUP BY release, visitor_id, visit_no
)
SELECT release, COUNT(*) AS visits,
    ROUND(1.0 - AVG(CAST(crashed AS DOUBLE)), 4) AS crash_free_visits,
    COUNT(DISTINCT visitor_id) AS visitors,
    ROUND(1.0 - CAST(COUNT(DISTINCT CASE WHEN crashed = 1 THEN visitor_id END) AS DOUBLE) / COUNT(DISTINCT visitor_id), 4) AS crash_free_visitors
FROM r
GROUP BY release
ORDER BY release
