"""The real node's relay (tests/lab/labrelay.py): its DNS rewrite and its port forms, pure.

The relay answers Pods' DNS on the bridge from challtestsrv and from BIND, with 127.0.0.1 in the
answers replaced by the bridge address; it must touch nothing else in a message.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from acmebridge.config import DEFAULT_SOLVER_IMAGE
from tests.lab.labrelay import _port_pair, rewrite_a_records
from tests.lab.nodeimages import default_solver_image

BRIDGE = ipaddress.IPv4Address("10.244.1.1").packed
ROOT = Path(__file__).resolve().parents[2]


def answer(qname: str, rdtype: str, *records: tuple[str, str, str]) -> bytes:
    query = dns.message.make_query(qname, rdtype)
    response = dns.message.make_response(query)
    for name, kind, value in records:
        response.answer.append(dns.rrset.from_text(name, 60, "IN", kind, value))
    return response.to_wire()


def addresses(wire: bytes) -> list[str]:
    message = dns.message.from_wire(wire)
    return [rr.to_text() for rrset in message.answer for rr in rrset]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param(
            [("pebble.", "A", "127.0.0.1")], ["10.244.1.1"], id="loopback becomes the bridge"
        ),
        pytest.param([("a.example.", "A", "192.0.2.7")], ["192.0.2.7"], id="another address stays"),
        pytest.param(
            [("alias.example.", "CNAME", "pebble."), ("pebble.", "A", "127.0.0.1")],
            ["pebble.", "10.244.1.1"],
            id="after a compressed CNAME",
        ),
        pytest.param(
            [("_acme-challenge.x.dns01.lab.test.", "TXT", '"127.0.0.1"')],
            ['"127.0.0.1"'],
            id="a TXT record of the same bytes stays (DNS-01 through BIND)",
        ),
    ],
)
def test_only_loopback_a_records_are_rewritten(
    records: list[tuple[str, str, str]], expected: list[str]
) -> None:
    wire = answer(records[0][0], records[0][1], *records)
    assert addresses(rewrite_a_records(wire, BRIDGE)) == expected


def test_a_message_it_cannot_parse_passes_unchanged() -> None:
    wire = answer("pebble.", "A", ("pebble.", "A", "127.0.0.1"))[:-3]
    assert rewrite_a_records(wire, BRIDGE) == wire


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        pytest.param("8054", (8054, 8054), id="one port: the same on both sides"),
        pytest.param("53:8053", (53, 8053), id="listen:target"),
    ],
)
def test_port_forms(text: str, pair: tuple[int, int]) -> None:
    assert _port_pair(text) == pair


def test_the_image_is_tagged_as_the_operators_own_default_solver_image() -> None:
    assert default_solver_image(ROOT) == DEFAULT_SOLVER_IMAGE
