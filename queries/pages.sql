-- name: pages
-- title: Top pages by visitors
-- params: limit (rows, default 100), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: page (path), visitors, pageviews
-- k: visitors
-- rollups: pageview page (days whose raw page views expired are added from the daily rollups, without filters)
WITH {{visits}}
SELECT url_path AS page, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS pageviews
FROM scoped
WHERE kind = 'pageview'
GROUP BY 1
ORDER BY visitors DESC, pageviews DESC, page
