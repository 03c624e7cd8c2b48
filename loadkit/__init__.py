"""modelyard's host-side load library: the SSE parser, a raw HTTP/1.1 load client, the bench stand-in,
stack bring-up helpers and the bench and soak runs that scripts/bench and scripts/soak drive. See
README.md here. Standard library only, except what scripts/bench runs in the project venv (uvloop when
installed) and the plot (matplotlib, in the bench venv)."""
