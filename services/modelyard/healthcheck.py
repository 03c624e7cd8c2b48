"""Container health check: exit 0 when the adapter is ready to serve (its upstream answers)."""

import os
import sys
import urllib.request

port = os.environ.get("MODELYARD_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as resp:
        sys.exit(0 if resp.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "not healthy"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
