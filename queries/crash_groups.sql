-- name: crash_groups
-- title: Crash groups for triage: one row per group (a fingerprint, after the tenant's merges and splits)
-- params: limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: fingerprint, error_type, example_message (scrubbed), crashes, visitors (affected), first_seen,
--   last_seen, releases (comma-separated)
-- k: visitors crashes
WITH {{visits}}
SELECT tacet_group(fingerprint, stack) AS fingerprint, MIN(error_type) AS error_type, MIN(message) AS example_message,
    COUNT(*) AS crashes, COUNT(DISTINCT visitor_id) AS visitors,
    MIN(ts) AS first_seen, MAX(ts) AS last_seen,
    array_to_string(array_sort(array_distinct(array_agg(release) FILTER (WHERE release IS NOT NULL))), ', ') AS releases
FROM scoped
WHERE kind = 'crash'
GROUP BY 1
ORDER BY crashes DESC, visitors DESC, 1
