-- name: crash_releases
-- title: One crash group release by release: when it first and last crashed in each, and how many of the
--   release's visits it hit (with release_health's visits per release: the group's own crash-free rate)
-- params: fingerprint (required), limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters
--   (page, country, browser, os, device, referrer_class, utm_source, utm_campaign, event, release, source, host;
--   they select the visits compared, fingerprint selects the group)
-- columns: release, first_seen, last_seen (the group's crashes in the release), crashes, visitors (affected),
--   crashed_visits (visits of the release with this group's crash; release_health's `visits`, under the usage k,
--   is what to divide by); releases where the group never crashed are left out, the oldest first
-- requires: fingerprint
-- k: visitors crashes
-- distributed: no (Ballista 55 does not finish it: tried with FILTER and with CASE aggregates)
WITH scoped AS (
    SELECT *, visitor_id % 64 AS visit_bucket FROM events
    WHERE {{range}} AND {{filters_but_fingerprint}} AND release IS NOT NULL
),
{{tagged}},
per_visit AS (
    SELECT release, visitor_id, visit_no,
        SUM(CASE WHEN kind = 'crash' AND tacet_group(fingerprint, stack) = $fingerprint THEN 1 ELSE 0 END) AS crashes,
        MIN(CASE WHEN kind = 'crash' AND tacet_group(fingerprint, stack) = $fingerprint THEN ts END) AS first_seen,
        MAX(CASE WHEN kind = 'crash' AND tacet_group(fingerprint, stack) = $fingerprint THEN ts END) AS last_seen
    FROM tagged
    GROUP BY release, visitor_id, visit_no
)
SELECT release, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen,
    SUM(crashes) AS crashes,
    COUNT(DISTINCT visitor_id) AS visitors,
    SUM(CASE WHEN visitor_id IS NULL THEN 0 ELSE 1 END) AS crashed_visits
FROM per_visit
WHERE crashes > 0
GROUP BY release
ORDER BY first_seen, release
