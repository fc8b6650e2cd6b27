-- name: crash_occurrences
-- title: The latest crashes of one group, one row each: when, release, browser, OS, page and the scrubbed
--   message; never a visitor id or pseudonym
-- params: fingerprint (required), limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters
--   (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release, fingerprint,
--   source, host)
-- columns: ts, release, browser, os, page, message, visitors (1: each row is one crash, so the tenant's crash
--   k-threshold decides whether single crashes are listed)
-- requires: fingerprint
-- k: visitors crashes
WITH {{visits}}
SELECT ts, release, browser, os, url_path AS page, message, 1 AS visitors
FROM scoped
WHERE kind = 'crash'
ORDER BY ts DESC, arrival DESC
