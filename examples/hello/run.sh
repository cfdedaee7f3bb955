#!/usr/bin/env bash
# Hello mesh, one command: a control plane (the mesh applied with `pointsman apply`), api and
# its canary api-v2 (python's http.server, each behind a sidecar), and 100 calls from web's
# sidecar by Service name. Prints how many answers each version gave (about 90 and 10), then
# stops everything (pointsman run drains).
set -euo pipefail
cd "$(dirname "$0")"
PATH="$(cd ../.. && pwd)/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT
mkdir -p "$work/v1" "$work/v2" && echo api-v1 > "$work/v1/index.html" && echo api-v2 > "$work/v2/index.html"

pointsman controlplane --store "file:$work/state" --log-level warning &
until pointsman apply -f mesh.yaml >/dev/null 2>&1; do sleep 0.2; done
pointsman run --service api --instance-ip 127.0.10.1 --app-ip 127.0.10.3 --admin 127.0.10.2:15000 --log-level warning \
  -- python3 -m http.server 9080 --bind 127.0.10.3 --directory "$work/v1" 2>/dev/null &
pointsman run --service api-v2 --instance-ip 127.0.11.1 --app-ip 127.0.11.3 --admin 127.0.11.2:15000 --log-level warning \
  -- python3 -m http.server 9080 --bind 127.0.11.3 --directory "$work/v2" 2>/dev/null &
pointsman sidecar --service web --instance-ip 127.0.12.1 --outbound-ip 127.0.12.2 --admin 127.0.12.2:15000 --log-level warning &

# web's sidecar is ready, and 20 calls through it all answered, api-v2 among them (the sidecars
# register as they start: the first calls may find no endpoint yet)
until curl -sf -o /dev/null http://127.0.12.2:15000/ready; do sleep 0.2; done
until r=$(for i in $(seq 20); do curl -s -H 'host: api' http://127.0.12.2:8080/; done) \
  && [ "$(grep -cx 'api-v[12]' <<<"$r")" = 20 ] && grep -qx api-v2 <<<"$r"; do sleep 0.5; done
for i in $(seq 100); do curl -s -H 'host: api' http://127.0.12.2:8080/; done | sort | uniq -c
