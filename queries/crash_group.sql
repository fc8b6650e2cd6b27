-- name: crash_group
-- title: One crash group in full: the latest example's scrubbed message and stack, counts, first and last seen
-- params: fingerprint (required), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: fingerprint, error_type, example_message (scrubbed; of the latest crash), example_stack (the latest
--   crash's scrubbed frames, top first, one per line), crashes, visitors (affected), first_seen, last_seen,
--   releases (comma-separated), example_release (of the latest crash)
-- k: visitors crashes
-- requires: fingerprint
WITH {{visits}}
SELECT tacet_group(fingerprint, stack) AS fingerprint, last_value(error_type ORDER BY ts) AS error_type,
    last_value(message ORDER BY ts) AS example_message,
    last_value(array_to_string(stack, chr(10)) ORDER BY ts) AS example_stack,
    COUNT(*) AS crashes, COUNT(DISTINCT visitor_id) AS visitors,
    MIN(ts) AS first_seen, MAX(ts) AS last_seen,
    array_to_string(array_sort(array_distinct(array_agg(release) FILTER (WHERE release IS NOT NULL))), ', ') AS releases,
    last_value(release ORDER BY ts) AS example_release
FROM scoped
WHERE kind = 'crash'
GROUP BY 1
