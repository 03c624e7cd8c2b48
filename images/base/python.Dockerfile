# Local stand-in for python:3.11-slim-bookworm (see scripts/build-base): Debian's Python 3.11.
ARG ROOT=modelyard-local/debian:bookworm
FROM ${ROOT}
RUN apt-get update -qq \
 && apt-get install -y -qq python3 python3-venv \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && rm -rf /var/lib/apt/lists/*
