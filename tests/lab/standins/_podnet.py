"""The lab's pod network: which address a Pod reports and which loopback address it runs on.

Test-only code. A Pod's process must listen on loopback (the lab sends no traffic beyond
127.0.0.0/8), but the API server refuses loopback addresses in EndpointSlices
(``ValidateEndpointIP``), so a Pod reporting 127.0.1.N would never get an endpoint. The node agent
therefore reports slot N as ``<pod prefix>N`` (10.244.0.N, kind's pod range) and runs the process
on ``<loopback prefix>N`` (127.0.1.N); the ingress stand-in maps an endpoint back the same way,
as a CNI's routes would. Nothing may connect to a reported pod address directly.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

FIRST_SLOT = 2  # .0 is the network and .1 the node (127.0.0.1 in this lab's spirit)
LAST_SLOT = 254


def _check_prefix(prefix: str) -> str:
    """A prefix is three octets and a dot, for example ``127.0.1.``."""
    ipaddress.IPv4Address(prefix + "0")
    if prefix.count(".") != 3:
        raise ValueError(f"{prefix!r} is not three octets followed by a dot")
    return prefix


@dataclass(frozen=True)
class PodNetwork:
    pod_prefix: str = "10.244.0."
    loopback_prefix: str = "127.0.1."

    def __post_init__(self) -> None:
        _check_prefix(self.pod_prefix)
        if not ipaddress.IPv4Address(_check_prefix(self.loopback_prefix) + "0").is_loopback:
            raise ValueError(f"{self.loopback_prefix!r} is not in 127.0.0.0/8")

    def pod_ip(self, slot: int) -> str:
        """The address the Pod reports in status.podIP."""
        return f"{self.pod_prefix}{slot}"

    def local_ip(self, slot: int) -> str:
        """The loopback address the Pod's process listens on."""
        return f"{self.loopback_prefix}{slot}"

    def slot_of(self, pod_ip: str) -> int | None:
        """The slot of a reported pod address, or None when it is not on this pod network."""
        if not pod_ip.startswith(self.pod_prefix):
            return None
        rest = pod_ip[len(self.pod_prefix) :]
        if not rest.isdigit() or not FIRST_SLOT <= int(rest) <= LAST_SLOT:
            return None
        return int(rest)

    def local_for(self, pod_ip: str) -> str | None:
        """The loopback address behind a reported pod address; None for any other address."""
        slot = self.slot_of(pod_ip)
        return None if slot is None else self.local_ip(slot)


@dataclass
class SlotPool:
    """Hands out the lowest free slot; a slot is reused once released. Thread-safe."""

    first: int = FIRST_SLOT
    last: int = LAST_SLOT
    _taken: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self) -> int | None:
        """The lowest free slot, or None when all are taken."""
        with self._lock:
            for slot in range(self.first, self.last + 1):
                if slot not in self._taken:
                    self._taken.add(slot)
                    return slot
            return None

    def reserve(self, slot: int) -> bool:
        """Takes this slot if it is in range and free."""
        with self._lock:
            if not self.first <= slot <= self.last or slot in self._taken:
                return False
            self._taken.add(slot)
            return True

    def release(self, slot: int) -> None:
        with self._lock:
            self._taken.discard(slot)
