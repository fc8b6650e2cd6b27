-- name: funnel
-- title: An ordered funnel over page views and events: how many visitors reached each step after the one before
-- params: steps (required: 2 to 8 steps, comma-separated, each page:/path or event:name, e.g.
--   page:/,page:/pricing,event:signup), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: step (1, 2, ...), name (the step), visitors (visitor-days that reached it in order),
--   conversion (share of the first step's visitors)
-- requires: steps
-- k: visitors
-- distributed: no (Ballista 55 mis-runs a UNION ALL of global aggregates like `counts`: sorted, it never
--   finishes; joined, it returns rows twice. The funnel runs on the local session)
WITH {{visits}},
-- `pos` numbers the events of a visit bucket in visitor, time and arrival order (events sent together share
-- a timestamp; arrival keeps the order they were sent in), so along one visitor's events it only grows, and
-- a step counts only after the one before it, never beside it.
s AS (
    SELECT visitor_id, ROW_NUMBER() OVER ({{visit_window}}) AS pos,
        CASE WHEN kind = 'pageview' THEN 'page:' || url_path WHEN kind = 'event' THEN 'event:' || name END AS step
    FROM scoped
    WHERE visitor_id IS NOT NULL
),
t1 AS (SELECT visitor_id, MIN(pos) AS t FROM s WHERE step = $step1 GROUP BY visitor_id),
t2 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t1 ON s.visitor_id = t1.visitor_id AND s.pos > t1.t WHERE s.step = $step2 GROUP BY s.visitor_id),
t3 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t2 ON s.visitor_id = t2.visitor_id AND s.pos > t2.t WHERE s.step = $step3 GROUP BY s.visitor_id),
t4 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t3 ON s.visitor_id = t3.visitor_id AND s.pos > t3.t WHERE s.step = $step4 GROUP BY s.visitor_id),
t5 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t4 ON s.visitor_id = t4.visitor_id AND s.pos > t4.t WHERE s.step = $step5 GROUP BY s.visitor_id),
t6 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t5 ON s.visitor_id = t5.visitor_id AND s.pos > t5.t WHERE s.step = $step6 GROUP BY s.visitor_id),
t7 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t6 ON s.visitor_id = t6.visitor_id AND s.pos > t6.t WHERE s.step = $step7 GROUP BY s.visitor_id),
t8 AS (SELECT s.visitor_id, MIN(s.pos) AS t FROM s JOIN t7 ON s.visitor_id = t7.visitor_id AND s.pos > t7.t WHERE s.step = $step8 GROUP BY s.visitor_id),
counts AS (
SELECT 1 AS step, $step1 AS name, (SELECT COUNT(*) FROM t1) AS visitors
UNION ALL SELECT 2 AS step, $step2 AS name, (SELECT COUNT(*) FROM t2) AS visitors
UNION ALL SELECT 3 AS step, $step3 AS name, (SELECT COUNT(*) FROM t3) AS visitors
UNION ALL SELECT 4 AS step, $step4 AS name, (SELECT COUNT(*) FROM t4) AS visitors
UNION ALL SELECT 5 AS step, $step5 AS name, (SELECT COUNT(*) FROM t5) AS visitors
UNION ALL SELECT 6 AS step, $step6 AS name, (SELECT COUNT(*) FROM t6) AS visitors
UNION ALL SELECT 7 AS step, $step7 AS name, (SELECT COUNT(*) FROM t7) AS visitors
UNION ALL SELECT 8 AS step, $step8 AS name, (SELECT COUNT(*) FROM t8) AS visitors
)
SELECT step, name, visitors,
    ROUND(CAST(visitors AS DOUBLE) / NULLIF(FIRST_VALUE(visitors) OVER (ORDER BY step), 0), 4) AS conversion
FROM counts
WHERE name IS NOT NULL
ORDER BY step
