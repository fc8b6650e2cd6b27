-- name: event_properties
-- title: One custom event broken down by the values of one property
-- params: event (required), prop (the property key; required), limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: value (the property's value; null when the event did not carry it), visitors, events
-- requires: event, prop
-- k: visitors
WITH {{visits}}
SELECT props[$prop] AS value, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS events
FROM scoped
WHERE kind = 'event' AND name = $event
GROUP BY 1
ORDER BY visitors DESC, events DESC, value
