#!/bin/sh
# Render the nginx config from the environment into /tmp (the root filesystem is read-only) and run
# nginx in the foreground. Only the variables listed here are substituted, so nginx's own $vars stay.
set -eu
: "${POLICY_BACKEND:=vllm}" "${GATEWAY_MAX_BODY_SIZE:=32m}" "${GATEWAY_READ_TIMEOUT:=3600s}"
case "$POLICY_BACKEND" in
  vllm|nim|openai|azure|openrouter) ;;
  *) echo "POLICY_BACKEND must be one of vllm, nim, openai, azure, openrouter (got '$POLICY_BACKEND')" >&2; exit 2 ;;
esac
# Docker's embedded DNS; fall back to the container's resolver outside Docker.
RESOLVER=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)
mkdir -p /tmp/nginx
sed -e "s|@POLICY_BACKEND@|$POLICY_BACKEND|g" \
    -e "s|@GATEWAY_MAX_BODY_SIZE@|$GATEWAY_MAX_BODY_SIZE|g" \
    -e "s|@GATEWAY_READ_TIMEOUT@|$GATEWAY_READ_TIMEOUT|g" \
    -e "s|@RESOLVER@|${RESOLVER:-127.0.0.11}|g" \
    /etc/modelyard/nginx.conf.template >/tmp/nginx/nginx.conf
exec nginx -c /tmp/nginx/nginx.conf -g 'daemon off;'
