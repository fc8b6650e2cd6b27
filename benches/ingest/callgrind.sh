#!/usr/bin/env bash
# Instructions a batched event costs the whole server (decoding, the privacy step, the log, the flush and
# its Parquet encoding), counted by valgrind's callgrind: the same count for the same binary whatever else
# the machine is doing, where the load harness's events/s move by a third between runs on a shared machine.
#
#   bash benches/ingest/callgrind.sh [tacet binary ...]     # default: target/release/tacet
#
# For each binary: `tacet serve` under callgrind takes 2, then 12 NDJSON batches of 1,000 of the harness's
# events (main.rs's `beacon`), one request at a time, and stops (SIGTERM: the last flush); the difference
# of the two totals over 10,000 events is what an event costs, start-up and shutdown left out. Needs
# valgrind and curl. Callgrind runs without SHA extensions, so the user pseudonym's HMAC counts ~6,800
# instructions an event more than it costs on a CPU with them (sha_ni). KEEP=dir keeps each 12-batch
# profile for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || set -- target/release/tacet
command -v valgrind >/dev/null || { echo "valgrind is not installed (Debian: apt-get install valgrind)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ua='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'
for i in $(seq 0 999); do
    printf '{"kind":"pageview","url":"https://shop.example.com/catalogue/category-%d/product-%d?utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale&ref=abc","referrer":"https://www.google.com/search?q=winter+boots+waterproof+size+42","user_id":"customer-%08d","props":{"plan":"pro","experiment":"checkout-v2","variant":"b","cart_items":"3","screen":"1920x1080","lang":"en-GB","title":"Waterproof winter boots for hiking - Shop Example - free delivery over 50"},"release":"web-2026.11.3"}\n' \
        $((i % 37)) $((i % 1013)) $((i % 50000))
done > "$work/batch.ndjson"

# Instructions of one server's life with `n` batches.
run() {
    local bin=$1 n=$2 d
    d=$(mktemp -d "$work/run.XXXX")
    cat > "$d/tacet.toml" <<'CFG'
[ingest]
flush_interval = "1s"
max_buffered_events = 2000000
[http]
requests_per_second_per_key = 0
requests_per_second_per_client = 0
events_per_second_per_tenant = 0
[[tenant]]
id = "bench"
ingest_key = "bench-ingest"
read_key = "bench-read-key-for-the-harness"
CFG
    TACET_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
        "$bin" serve --listen 127.0.0.1:0 --config "$d/tacet.toml" --data-dir "$d/data" >"$d/out" 2>"$d/err" &
    local vpid=$! addr=""
    until addr=$(grep -o 'http://[0-9.:]*' "$d/out" 2>/dev/null | head -1) && [ -n "$addr" ]; do
        kill -0 $vpid 2>/dev/null || { cat "$d/err"; exit 1; }
        sleep 0.2
    done
    until curl -sf "$addr/readyz" >/dev/null; do sleep 0.2; done
    for _ in $(seq "$n"); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$addr/v1/events" \
            -H 'content-type: application/x-ndjson' -H 'x-tacet-key: bench-ingest' -H "user-agent: $ua" \
            --data-binary @"$work/batch.ndjson")
        [ "$code" = 202 ] || { echo "a batch was answered $code"; exit 1; }
    done
    kill -TERM $vpid
    wait $vpid || true
    if [ -n "${KEEP:-}" ] && [ "$n" -gt 2 ]; then
        mkdir -p "$KEEP" && cp "$d/cg.out" "$KEEP/$(basename "$bin")-$$.callgrind"
    fi
    cat "$d"/cg.out* | awk '/^summary:/ { s += $2 } END { print s }'
}

for bin in "$@"; do
    echo "$bin: counting 2 batches, then 12 (a minute or two) ..." >&2
    small=$(run "$bin" 2)
    large=$(run "$bin" 12)
    echo "$bin: $(( (large - small) / 10000 )) instructions an event ($small for 2 batches, $large for 12)"
done
