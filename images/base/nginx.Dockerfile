# Local stand-in for nginx:1.27-bookworm (see scripts/build-base): Debian's nginx.
ARG ROOT=modelyard-local/debian:bookworm
FROM ${ROOT}
RUN apt-get update -qq \
 && apt-get install -y -qq nginx-light curl \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*
