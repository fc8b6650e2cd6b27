-- name: campaigns
-- title: UTM campaigns
-- params: limit (rows, default 100), from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: utm_source, utm_medium, utm_campaign, visitors, pageviews
-- k: visitors
-- rollups: pageview campaign (days whose raw page views expired are added from the daily rollups, without filters)
WITH {{visits}}
SELECT utm_source AS utm_source, utm_medium AS utm_medium, utm_campaign AS utm_campaign, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS pageviews
FROM scoped
WHERE kind = 'pageview' AND utm_source IS NOT NULL
GROUP BY 1, 2, 3
ORDER BY visitors DESC, pageviews DESC, utm_source, utm_medium, utm_campaign
