#!/bin/sh
# Render the nginx config from the environment into /tmp (the root filesystem is read-only) and run
# nginx in the foreground. Only the variables listed here are substituted, so nginx's own $vars stay.
set -eu
: "${POLICY_BACKEND:=vllm}" "${GATEWAY_MAX_BODY_SIZE:=32m}" "${GATEWAY_READ_TIMEOUT:=3600s}"
# Client API keys (comma or space separated; empty: no auth) and limits (empty or 0: off).
: "${GATEWAY_API_KEYS:=}" "${GATEWAY_RATE_PER_KEY:=}" "${GATEWAY_RATE_GLOBAL:=}" "${GATEWAY_BURST:=}"
: "${GATEWAY_MAX_CONNS_PER_KEY:=}" "${GATEWAY_MAX_CONNS:=}" "${GATEWAY_RETRY_AFTER:=1}"
# Slow clients: how long nginx waits for a request's headers, between two reads of its body, and
# between two writes of the response (a client that stops reading a stream) before it gives up.
: "${GATEWAY_CLIENT_HEADER_TIMEOUT:=10s}" "${GATEWAY_CLIENT_BODY_TIMEOUT:=30s}" "${GATEWAY_SEND_TIMEOUT:=120s}"
case "$POLICY_BACKEND" in
  vllm|nim|openai|azure|openrouter) ;;
  *) echo "POLICY_BACKEND must be one of vllm, nim, openai, azure, openrouter (got '$POLICY_BACKEND')" >&2; exit 2 ;;
esac
fail() { echo "gateway: $*" >&2; exit 2; }
rate() {  # 10 (per second), 10r/s or 600r/m
  case "$2" in
    ''|0) echo "" ;;
    *[!0-9]*) echo "$2" | grep -Eqx '[0-9]+r/[sm]' || fail "$1 must be a rate such as 10, 10r/s or 600r/m (got '$2')"; echo "$2" ;;
    *) echo "$2r/s" ;;
  esac
}
count() { echo "$2" | grep -Eqx '[0-9]*' || fail "$1 must be a whole number (got '$2')"; [ "${2:-0}" -gt 0 ] 2>/dev/null && echo "$2" || echo ""; }
RATE_PER_KEY=$(rate GATEWAY_RATE_PER_KEY "$GATEWAY_RATE_PER_KEY")
RATE_GLOBAL=$(rate GATEWAY_RATE_GLOBAL "$GATEWAY_RATE_GLOBAL")
BURST=$(count GATEWAY_BURST "$GATEWAY_BURST")
CONNS_PER_KEY=$(count GATEWAY_MAX_CONNS_PER_KEY "$GATEWAY_MAX_CONNS_PER_KEY")
CONNS=$(count GATEWAY_MAX_CONNS "$GATEWAY_MAX_CONNS")
echo "$GATEWAY_RETRY_AFTER" | grep -Eqx '[0-9]+' || fail "GATEWAY_RETRY_AFTER must be whole seconds"

# Docker's embedded DNS; fall back to the container's resolver outside Docker.
RESOLVER=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)
mkdir -p /tmp/nginx
umask 077  # the key map is readable by nginx's user alone

# The key map: "Bearer <key>" in Authorization, or the key alone in X-Api-Key (Anthropic's SDKs send
# that) -> the key's number (k1, k2, ...). The number, never the key, is what the access log and the
# rate limits see. Keys are matched exactly (a case-sensitive regex each: a plain map entry would match
# case-insensitively); the scheme word is case-insensitive (RFC 7235). The map reads both headers
# joined by "|", a character no key may hold.
# The scope map: the key's number -> a stable id of the key (a hash, never the key), sent to the adapters as
# X-Modelyard-Key: what stored responses belong to (docs/state.md); it stays the same when keys are reordered.
scopes="    open open;"
{
  echo "map \"\$http_authorization|\$http_x_api_key\" \$api_key_id {"
  if [ -z "$(echo "$GATEWAY_API_KEYS" | tr -d ' ,')" ]; then
    echo "    default open;"  # no keys configured: every request is let in
  else
    echo "    default \"\";"
    i=0
    for key in $(echo "$GATEWAY_API_KEYS" | tr ',' ' '); do
      echo "$key" | grep -Eqx '[A-Za-z0-9._~+/=-]{8,}' \
        || fail "GATEWAY_API_KEYS: key $((i + 1)) must be 8 or more of A-Z a-z 0-9 . _ ~ + / = -"
      i=$((i + 1))
      escaped=$(printf '%s' "$key" | sed -e 's/[.+/=~-]/\\&/g')
      echo "    \"~^(?i:bearer) +$escaped\\|\" k$i;"
      echo "    \"~\\|$escaped\$\" k$i;"
      scopes="$scopes
    k$i key-$(printf 'modelyard-scope:%s' "$key" | sha256sum | cut -c1-24);"
    done
  fi
  echo "}"
  echo "map \$api_key_id \$api_key_scope {"
  echo "    default \"\";"
  echo "$scopes"
  echo "}"
} >/tmp/nginx/keys.conf

# Limits (http level: the zones; server level: what applies to proxied requests). Per key: the key's
# number, or the client address when no keys are configured. Global: one constant key.
{
  echo "map \$api_key_id \$limit_key { default \$api_key_id; open \$binary_remote_addr; \"\" \"\"; }"
  echo "map \$api_key_id \$limit_all { default all; \"\" \"\"; }"  # refused requests are not counted
  [ -n "$RATE_PER_KEY" ] && echo "limit_req_zone \$limit_key zone=per_key:10m rate=$RATE_PER_KEY;"
  [ -n "$RATE_GLOBAL" ] && echo "limit_req_zone \$limit_all zone=global:1m rate=$RATE_GLOBAL;"
  [ -n "$CONNS_PER_KEY$CONNS" ] && echo "limit_conn_zone \$limit_key zone=conn_per_key:10m;" \
    && echo "limit_conn_zone \$limit_all zone=conn_all:1m;"
  echo "limit_req_status 429; limit_conn_status 429; limit_req_log_level warn; limit_conn_log_level warn;"
} >/tmp/nginx/limits-http.conf
{
  nodelay=""; [ -n "$BURST" ] && nodelay=" burst=$BURST nodelay"
  [ -n "$RATE_PER_KEY" ] && echo "limit_req zone=per_key$nodelay;"
  [ -n "$RATE_GLOBAL" ] && echo "limit_req zone=global$nodelay;"
  [ -n "$CONNS_PER_KEY" ] && echo "limit_conn conn_per_key $CONNS_PER_KEY;"
  [ -n "$CONNS" ] && echo "limit_conn conn_all $CONNS;"
  true
} >/tmp/nginx/limits-server.conf

# Keep-alive to the adapters: a new TCP connection per request to the adapter cost more gateway CPU than
# the proxying itself. nginx 1.22 keeps connections only to an `upstream` group, whose addresses it
# resolves once, when it loads its config. So each adapter that Docker's DNS knows now gets a group at its
# current address, and a watcher rewrites the groups and reloads nginx (gracefully: running streams
# finish on the old workers) when an adapter comes, goes or moves. A backend with no group (its profile
# is not running) goes through the resolver, per request, as `adapter-<backend>:PORT`: a clean 502.
: "${GATEWAY_ADAPTER_PORT:=8000}" "${GATEWAY_WATCH_INTERVAL:=5}"
# The adapters' host names are <prefix><backend>: adapter-vllm, ... in compose; in Kubernetes the Helm
# chart names its adapter Services <release>-modelyard-adapter-<backend> and sets the prefix to match.
: "${GATEWAY_ADAPTER_PREFIX:=adapter-}"
echo "$GATEWAY_ADAPTER_PREFIX" | grep -Eqx '[a-z0-9][a-z0-9-]*' || fail "GATEWAY_ADAPTER_PREFIX must be a DNS label prefix such as adapter-"
echo "$GATEWAY_ADAPTER_PORT" | grep -Eqx '[0-9]+' || fail "GATEWAY_ADAPTER_PORT must be a port number"
echo "$GATEWAY_WATCH_INTERVAL" | grep -Eqx '[0-9]+' || fail "GATEWAY_WATCH_INTERVAL must be whole seconds"
# One getent and one awk a round (the watcher's whole cost: a few ms of CPU every interval). getent
# prints a name's canonical name on the first line of its addresses; every address of a name is kept
# (`--scale adapter-vllm=2` gives two, balanced round-robin), sorted so an unchanged set compares equal.
# Idle connections close at 60 s, before the adapter's own 75 s: nginx never sends a request on a
# connection the adapter is closing (a POST lost that way would not be retried).
render_upstreams() {
  p=$GATEWAY_ADAPTER_PREFIX
  getent ahostsv4 "${p}vllm" "${p}nim" "${p}openai" "${p}azure" "${p}openrouter" 2>/dev/null |
    awk -v port="$GATEWAY_ADAPTER_PORT" -v prefix="$p" '
      NF >= 3 { name = $3; sub(/\..*/, "", name); if (index(name, prefix) == 1) name = substr(name, length(prefix) + 1) }
      name ~ /^(vllm|nim|openai|azure|openrouter)$/ && !seen[name, $1]++ { n[name]++; ip[name, n[name]] = $1 }
      END {
        print "map $backend $adapter {"
        print "    default " prefix "$backend:" port ";"
        split("vllm nim openai azure openrouter", names, " ")
        for (k = 1; k <= 5; k++) if (n[b = names[k]]) print "    " b " adapter_" b ";"
        print "}"
        for (k = 1; k <= 5; k++) {
          if (!n[b = names[k]]) continue
          for (i = 2; i <= n[b]; i++)  # insertion sort: a handful of addresses
            for (j = i; j > 1 && ip[b, j] < ip[b, j - 1]; j--) { t = ip[b, j]; ip[b, j] = ip[b, j - 1]; ip[b, j - 1] = t }
          line = "upstream adapter_" b " {"
          for (i = 1; i <= n[b]; i++) line = line " server " ip[b, i] ":" port " max_fails=0;"
          print line " keepalive 64; keepalive_timeout 60s; keepalive_requests 100000; }"
        }
      }'
}
current=$(render_upstreams)
echo "$current" >/tmp/nginx/upstreams.conf
watch_upstreams() {
  while sleep "$GATEWAY_WATCH_INTERVAL"; do
    next=$(render_upstreams)
    [ "$next" = "$current" ] && continue
    current=$next
    echo "$current" >/tmp/nginx/upstreams.conf
    echo "gateway: adapters changed, reloading:" $(echo "$current" | grep -o 'adapter_[a-z]* {[^k]*') >&2
    nginx -c /tmp/nginx/nginx.conf -s reload || true
  done
}

sed -e "s|@POLICY_BACKEND@|$POLICY_BACKEND|g" \
    -e "s|@GATEWAY_MAX_BODY_SIZE@|$GATEWAY_MAX_BODY_SIZE|g" \
    -e "s|@GATEWAY_READ_TIMEOUT@|$GATEWAY_READ_TIMEOUT|g" \
    -e "s|@GATEWAY_CLIENT_HEADER_TIMEOUT@|$GATEWAY_CLIENT_HEADER_TIMEOUT|g" \
    -e "s|@GATEWAY_CLIENT_BODY_TIMEOUT@|$GATEWAY_CLIENT_BODY_TIMEOUT|g" \
    -e "s|@GATEWAY_SEND_TIMEOUT@|$GATEWAY_SEND_TIMEOUT|g" \
    -e "s|@GATEWAY_RETRY_AFTER@|$GATEWAY_RETRY_AFTER|g" \
    -e "s|@RESOLVER@|${RESOLVER:-127.0.0.11}|g" \
    /etc/modelyard/nginx.conf.template >/tmp/nginx/nginx.conf
watch_upstreams &  # a child of nginx after the exec; it goes when the container does
exec nginx -c /tmp/nginx/nginx.conf -g 'daemon off;'
