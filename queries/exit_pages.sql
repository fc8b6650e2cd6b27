-- name: exit_pages
-- title: Exit pages: the last page of each visit
-- params: limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: page (path), visitors, visits
-- k: visitors
-- rollups: pageview exit_page (closed days the planner trusts and days whose raw page views expired come from the daily rollups, without filters)
WITH {{visits}},
ranked AS (
    SELECT visitor_id, url_path, visit_no,
        tacet_next(visit_no) OVER ({{visit_window}}) AS neighbour_visit
    FROM tagged
    WHERE kind = 'pageview' AND visitor_id IS NOT NULL
)
-- The last page view of a visit: the next page view (in visitor, time order) belongs to another visit.
SELECT url_path AS page, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS visits
FROM ranked
WHERE neighbour_visit IS DISTINCT FROM visit_no
GROUP BY url_path
ORDER BY visitors DESC, visits DESC, page
