"""The Swarm lab's load (run inside the lab's hub namespace by swarm_lab.py; standard library only).

    python3 swarm_load.py URL SECONDS [THREADS] [SESSIONS]

THREADS clients send short non-streamed chat completions round SESSIONS `x-session-id`s through the
gateway, each with a 15 s client timeout, while another thread reads the adapter's /readyz every 0.25 s.
Prints one JSON object: every request (start, seconds, session, status, replica) and every /readyz reading.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit

BODY = json.dumps({"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})


def request(host: str, port: int, method: str, path: str, headers: dict[str, str], body: str | None):
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-modelyard-replica"), resp.read().decode(errors="replace")
    finally:
        conn.close()


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    threads, sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 4, int(sys.argv[4]) if len(sys.argv) > 4 else 12
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    end = time.time() + seconds
    requests: list[dict] = []
    ready: list[dict] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        n = k
        while time.time() < end:
            session = f"s{n % sessions}"
            n += threads
            t0 = time.time()
            try:
                status, replica, _ = request(
                    host,
                    port,
                    "POST",
                    "/v1/chat/completions",
                    {"content-type": "application/json", "x-session-id": session},
                    BODY,
                )
                err = ""
            except Exception as exc:  # noqa: BLE001 - a failure to count, with its kind
                status, replica, err = 0, None, type(exc).__name__
            with lock:
                requests.append(
                    {
                        "t": t0,
                        "s": round(time.time() - t0, 3),
                        "session": session,
                        "status": status,
                        "replica": replica,
                        "error": err,
                    }
                )
            time.sleep(0.05)

    def readiness() -> None:
        while time.time() < end:
            t0 = time.time()
            try:
                status, _, text = request(host, port, "GET", "/vllm/readyz", {}, None)
            except Exception as exc:  # noqa: BLE001
                status, text = 0, type(exc).__name__
            ready.append({"t": t0, "status": status, "text": text})
            time.sleep(0.25)

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    workers.append(threading.Thread(target=readiness))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    json.dump({"requests": requests, "ready": ready}, sys.stdout)


if __name__ == "__main__":
    main()
