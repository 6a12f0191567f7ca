"""The benchmark's own Pebble: the lab's Pebble binary and settings, on ports of its own.

Why not the lab's Pebble: it is shared by every test and engineer on the machine. A benchmark
run loads it (a scale run with 5,000 orders on one account wedged Pebble v2.10.1 for everyone:
requests hung on its in-memory store's locks until Pebble was restarted), and other people's tests
on it would add their load to the benchmark's timings. This Pebble is the same binary with the
same settings as the lab's (``tests/lab/labparts.pebble``): ``PEBBLE_VA_NOSLEEP=1``, no random
bad nonces, one profile of 90 days, names resolved by the lab's BIND (which answers the DNS-01
zones and forwards every other name to pebble-challtestsrv), HTTP-01 validated on port 5002,
where the lab's ingress stand-in listens, and the lab's Pebble TLS certificate, so Issuers trust
it with the same caBundle. It is started and stopped by the run (``tests/lab/pebbles.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.lab import labparts
from tests.lab.labenv import Lab
from tests.lab.pebbles import ExtraPebble, free_ports

VALIDITY_SECONDS = 90 * 24 * 3600


@contextmanager
def bench_pebble(lab: Lab) -> Iterator[ExtraPebble]:
    layout = labparts.Layout(Path(lab.env["LAB_DIR"]).parent)
    acme_port, mgmt_port = free_ports()
    pebble = ExtraPebble(
        name="bench",
        layout=layout,
        acme_port=acme_port,
        mgmt_port=mgmt_port,
        profiles={"default": {"description": "90 days", "validityPeriod": VALIDITY_SECONDS}},
        dns_server=f"127.0.0.1:{labparts.BIND_PORT}",
    )
    pebble.start()
    try:
        yield pebble
    finally:
        pebble.stop()
        shutil.rmtree(pebble.home, ignore_errors=True)
