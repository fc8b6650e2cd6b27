-- name: retention
-- title: Weekly retention cohorts of identified users (user pseudonyms; visitor ids cannot link days)
-- params: from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: cohort (the week, Monday, in the tenant's time zone, a user was first seen in the range), week (weeks since), users
-- k: users
WITH {{visits}},
active AS (
    SELECT user_pseudonym, date_trunc('week', ts) AS week
    FROM scoped
    WHERE user_pseudonym IS NOT NULL
    GROUP BY 1, 2
),
first_seen AS (
    SELECT user_pseudonym, MIN(week) AS cohort FROM active GROUP BY 1
)
SELECT f.cohort,
    CAST((CAST(a.week AS BIGINT) - CAST(f.cohort AS BIGINT)) / 604800000 AS BIGINT) AS week,
    COUNT(DISTINCT a.user_pseudonym) AS users
FROM active a JOIN first_seen f ON a.user_pseudonym = f.user_pseudonym
GROUP BY 1, 2
ORDER BY 1, 2
