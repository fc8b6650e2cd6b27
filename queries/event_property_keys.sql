-- name: event_property_keys
-- title: The properties one custom event carried: each key with the visitors and events that sent it
-- params: event (required), limit, from, to (YYYY-MM-DD, inclusive; default the last 30 days), the filters (page, country, browser, os, device,
--   referrer_class, utm_source, utm_campaign, event, release, fingerprint, source, host)
-- columns: prop (the property key), visitors, events (of the event carrying it)
-- requires: event
-- k: visitors
WITH {{visits}},
keyed AS (
    SELECT visitor_id, unnest(map_keys(props)) AS prop
    FROM scoped
    WHERE kind = 'event' AND name = $event AND props IS NOT NULL
)
SELECT prop, COUNT(DISTINCT visitor_id) AS visitors, COUNT(*) AS events
FROM keyed
GROUP BY prop
ORDER BY visitors DESC, events DESC, prop
