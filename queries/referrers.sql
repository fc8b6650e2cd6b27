-- name: referrers
-- title: Where visits come from: referrer class, source and host
-- params: limit (rows, default 100), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: referrer_class (search, social, email, direct, other), source, host, visitors, pageviews
-- k: visitors
-- rollups: pageview referrer (days whose raw page views expired are added from the daily rollups, without filters)
WITH {{visits}}
SELECT referrer_class AS referrer_class, referrer_source AS source, referrer_host AS host, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS pageviews
FROM scoped
WHERE kind = 'pageview' AND referrer_class <> 'internal'
GROUP BY 1, 2, 3
ORDER BY visitors DESC, pageviews DESC, referrer_class, source, host
