-- name: countries
-- title: Countries and regions by visitors
-- params: limit (rows, default 100), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: country (ISO code; null when unknown or not kept), region, visitors, pageviews
-- k: visitors
-- rollups: pageview country_region (days whose raw page views expired are added from the daily rollups, without filters)
WITH {{visits}}
SELECT country AS country, region AS region, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS pageviews
FROM scoped
WHERE kind = 'pageview'
GROUP BY 1, 2
ORDER BY visitors DESC, pageviews DESC, country, region
