"""One Certificate reconcile's context: the object, its status patch, and how both are written.

Every step of a reconcile adds to one ``StatusPatch``; ``flush`` writes it as a single merge
patch (nothing when it changes nothing) and takes the API server's answer as the new base, so
that later steps, and the next reconcile, never act on a stale journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from acmebridge.domain.status import CertificateStatus, StatusPatch
from acmebridge.reconcile.runtime import ObjectKey, Runtime


@dataclass
class Ctx:
    rt: Runtime
    key: ObjectKey
    body: dict[str, Any]
    now: datetime
    patch: StatusPatch

    @classmethod
    def of(cls, rt: Runtime, key: ObjectKey, body: dict[str, Any], now: datetime) -> Ctx:
        generation = int(body["metadata"].get("generation", 0))
        unwritten = rt.unwritten.get(key) or {}
        status = CertificateStatus.from_json({**(body.get("status") or {}), **unwritten})
        patch = StatusPatch(status, generation)
        patch.body.update(unwritten)
        return cls(rt, key, body, now, patch)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def labels(self) -> Mapping[str, str]:
        return self.body["metadata"].get("labels") or {}

    @property
    def status(self) -> CertificateStatus:
        """The status as it will be once the pending patch is written."""
        return self.patch.current

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.patch.condition(type_, status, reason, message, now=self.now)

    async def flush(self) -> None:
        """Write the accumulated status patch, if it changes anything."""
        if not self.patch.body:
            return
        if not self.patch.changes(self.body.get("status") or {}):
            self.rt.unwritten.pop(self.key, None)
            self.patch.clear(self.patch.current)
            return
        body = await self.rt.patch_status(self.key, self.patch.body)
        self.body = body
        self.patch.clear(CertificateStatus.from_json(body.get("status")))

    async def event(self, type_: str, reason: str, message: str) -> None:
        await self.rt.event(self.body, type_, reason, message)

    def log_name(self) -> str:
        return f"{self.namespace}/{self.name}"
