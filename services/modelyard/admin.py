"""The admin API (docs/fleet.md), for the operator and the trainer, behind MODELYARD_ADMIN_KEY sent as
`x-modelyard-admin-key` (the gateway's own key, if any, still goes in Authorization):

  GET/POST/DELETE /admin/replicas   the engine replicas: list with health, in-flight and session counts;
                                    register one (`url`, optional `weight`, `labels`); deregister one
  POST /admin/pause                 stop dispatching new generations; return once in-flight ones end
                                    (`abort: true` ends them with a clear error instead)
  POST /admin/resume                dispatch again, stamping replies with `policy_version`
"""

from __future__ import annotations

import hmac
from typing import Any

from .errors import APIError, invalid
from .replicas import ReplicaSet
from .store.base import Registry
from .upstream import Upstream

ADMIN_HEADER = "x-modelyard-admin-key"


class AdminService:
    def __init__(self, upstream: Upstream, admin_key: str) -> None:
        self.upstream, self.admin_key = upstream, admin_key
        self.registry: Registry | None = None  # set at start where a store is configured

    def check(self, given: str | None) -> None:
        if not self.admin_key:
            raise APIError(404, "The admin API is off: set MODELYARD_ADMIN_KEY to turn it on.", code="not_found")
        if not given or not hmac.compare_digest(given.encode(), self.admin_key.encode()):
            raise APIError(401, f"Missing or wrong admin key: send it as {ADMIN_HEADER}.", code="invalid_api_key")

    def replica_set(self) -> ReplicaSet:
        eps = self.upstream.endpoints
        if not isinstance(eps, ReplicaSet):
            msg = (
                "This adapter has one fixed upstream: set MODELYARD_DYNAMIC_REPLICAS=true (or MODELYARD_UPSTREAM_DNS)."
            )
            raise APIError(409, msg, code="replicas_not_dynamic", type="invalid_request_error")
        return eps

    async def restore(self) -> None:
        """Members registered before a restart join again."""
        if self.registry is None or not isinstance(self.upstream.endpoints, ReplicaSet):
            return
        for url, weight, labels in await self.registry.all():
            self.upstream.endpoints.add(url, "registered", weight, labels)

    def replicas(self) -> dict[str, Any]:
        return {"object": "list", "data": self.replica_set().describe()}

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        url, weight, labels = _replica(body)
        eps = self.replica_set()
        member = eps.add(url, "registered", weight, labels)
        if self.registry is not None:
            await self.registry.put(member.base_url, weight, labels)
        await eps.probe_all()  # it takes requests as soon as its probe passes
        return next(d for d in eps.describe() if d["index"] == member.index)

    async def deregister(self, body: dict[str, Any]) -> dict[str, Any]:
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise invalid("'url' must be the base URL of a registered replica.", "url")
        if self.replica_set().remove(url) is None:
            raise APIError(404, f"No replica with url '{url}'.", param="url", code="replica_not_found")
        if self.registry is not None:
            await self.registry.delete(url.rstrip("/"))
        return {"url": url.rstrip("/"), "deleted": True}

    async def pause(self, body: dict[str, Any]) -> dict[str, Any]:
        abort, timeout = body.get("abort", False), body.get("timeout", 600)
        if not isinstance(abort, bool):
            raise invalid("'abort' must be a boolean.", "abort", "invalid_type")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise invalid("'timeout' must be a number of seconds (0 or more).", "timeout", "invalid_type")
        return await self.upstream.gate.pause(lambda: self.upstream.limit.active, abort, float(timeout))

    def resume(self, body: dict[str, Any]) -> dict[str, Any]:
        version = body.get("policy_version")
        if version is not None and (not isinstance(version, str | int) or isinstance(version, bool)):
            raise invalid("'policy_version' must be a string or an integer.", "policy_version", "invalid_type")
        return self.upstream.gate.resume(None if version is None else str(version))


def _replica(body: dict[str, Any]) -> tuple[str, float, dict[str, str]]:
    url, weight, labels = body.get("url"), body.get("weight", 1.0), body.get("labels") or {}
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise invalid("'url' must be the replica's base URL, such as http://10.0.0.7:8000/v1.", "url")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise invalid("'weight' must be a number above 0.", "weight", "invalid_type")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise invalid("'labels' must be an object of strings.", "labels", "invalid_type")
    return url, float(weight), labels
