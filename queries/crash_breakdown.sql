-- name: crash_breakdown
-- title: One crash group broken down by release, browser, operating system and page
-- params: fingerprint (required), limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters
--   (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release, fingerprint,
--   source, host)
-- columns: dimension (release, browser, os, page), value, crashes, visitors (affected)
-- requires: fingerprint
-- k: visitors crashes
WITH {{visits}},
c AS (SELECT * FROM scoped WHERE kind = 'crash')
SELECT dimension, value, crashes, visitors FROM (
    SELECT 'release' AS dimension, COALESCE(release, '(none)') AS value, COUNT(*) AS crashes, COUNT(DISTINCT visitor_id) AS visitors FROM c GROUP BY 2
    UNION ALL SELECT 'browser', browser, COUNT(*), COUNT(DISTINCT visitor_id) FROM c GROUP BY 2
    UNION ALL SELECT 'os', os, COUNT(*), COUNT(DISTINCT visitor_id) FROM c GROUP BY 2
    UNION ALL SELECT 'page', url_path, COUNT(*), COUNT(DISTINCT visitor_id) FROM c GROUP BY 2
)
ORDER BY dimension, crashes DESC, value
