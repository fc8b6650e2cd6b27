-- name: exit_pages
-- title: Exit pages: the last page of each visit
-- params: limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint)
-- columns: page (path), visitors, visits
-- k: visitors
WITH {{visits}},
ranked AS (
    SELECT visitor_id, url_path,
        ROW_NUMBER() OVER (PARTITION BY visitor_id, visit_no ORDER BY ts DESC) AS rank
    FROM tagged
    WHERE kind = 'pageview' AND visitor_id IS NOT NULL
)
SELECT url_path AS page, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS visits
FROM ranked
WHERE rank = 1
GROUP BY url_path
ORDER BY visitors DESC, visits DESC, page
