"""DNS-01 through RFC 2136 in Certificates: the operator adds TXT values in the lab's real BIND,
Pebble and step-ca validate them through BIND, and every value is removed afterwards (after
success, after a restart, after a deletion mid-order); a wrong TSIG secret says what BIND said.

"What BIND serves" is read with a plain DNS query to BIND, never through the operator's adapter.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from acmebridge.adapters.kube import Kube, core_path, ours_path
from acmebridge.domain.dns01 import challenge_name, parse_server
from tests.lab import manifests
from tests.lab.conftest import make_certificate
from tests.lab.operator_proc import OperatorProcess
from tests.lab.test_renewal import assert_secret_matches, certificate, explain, wait_revision
from tests.lab.waits import condition, wait_for

pytestmark = pytest.mark.lab


def txt_at(lab: Any, name: str) -> set[str]:
    host, port = parse_server(lab.env["BIND_ADDR"])
    reply = dns.query.udp(dns.message.make_query(name, "TXT"), host, port=port, timeout=3)
    return {
        b"".join(rdata.strings).decode()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    }


def names(lab: Any) -> tuple[str, list[str]]:
    """A made-up name under BIND's zone, and a wildcard plus its apex for it."""
    base = f"w{secrets.token_hex(3)}.{lab.env['BIND_ZONE']}"
    return base, [f"*.{base}", base]


def dns01_issuer(
    lab: Any,
    k: Kube,
    namespace: str,
    *,
    acme: dict[str, Any] | None = None,
    tsig: str | None = None,
) -> str:
    k.create(core_path("secrets", namespace), manifests.tsig_secret(namespace, lab.env, value=tsig))
    spec = acme or manifests.pebble_acme(lab.env)
    spec = {**spec, "solvers": [manifests.dns01_solver(lab.env)]}
    k.create(ours_path("issuers", namespace), manifests.issuer(namespace, "dns", spec))
    return "dns"


def dns01_operator(
    lab: Any, factory: Callable[..., OperatorProcess], namespace: str, **kw: Any
) -> OperatorProcess:
    return factory(namespace, extra=[f"--dns01-nameservers={lab.env['BIND_ADDR']}"], **kw)


def test_a_wildcard_and_its_apex_are_issued_by_pebble_through_bind_and_the_values_removed(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    dns01_operator(lab, operator_factory, namespace)
    base, wanted = names(lab)
    issuer = dns01_issuer(lab, k, namespace)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=wanted)
    wait_revision(k, namespace, "web", 1)
    assert_secret_matches(
        k,
        namespace,
        "web-tls",
        dns_names=wanted,
        root_pem=Path(lab.env["PEBBLE_ROOT"]).read_bytes(),
    )
    # Pebble asked BIND for the record (its query is in BIND's log), and nothing is left.
    log = (Path(lab.env["LAB_DIR"]) / "logs" / "named.log").read_text(errors="replace")
    assert f"{challenge_name(base).rstrip('.')} IN TXT" in log
    assert txt_at(lab, challenge_name(base)) == set()
    done = certificate(k, namespace, "web")
    assert "finalizers" not in done["metadata"], done["metadata"]


def test_a_wildcard_and_its_apex_are_issued_by_step_ca_through_bind(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    dns01_operator(lab, operator_factory, namespace)
    base, wanted = names(lab)
    stepca = {
        "server": lab.env["STEPCA_DIRECTORY_URL"],
        "caBundle": manifests.b64_file(lab.env["STEPCA_TLS_CA"]),
        "privateKeySecretRef": {"name": "stepca-account"},
    }
    issuer = dns01_issuer(lab, k, namespace, acme=stepca)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=wanted)
    wait_revision(k, namespace, "web", 1)
    assert_secret_matches(
        k,
        namespace,
        "web-tls",
        dns_names=wanted,
        root_pem=Path(lab.env["STEPCA_ROOT"]).read_bytes(),
    )
    assert txt_at(lab, challenge_name(base)) == set()


def killed_mid_order(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    kill_after: str,
) -> tuple[str, str]:
    """A DNS-01 Certificate `web` whose operator was SIGKILLed right after ``kill_after``
    (tests/lab/hooks): the base name its TXT values are for, and its Issuer's name."""
    first = dns01_operator(lab, operator_factory, namespace, kill_after=kill_after)
    base, wanted = names(lab)
    issuer = dns01_issuer(lab, k, namespace)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=wanted)
    wait_for(lambda: not first.alive(), timeout=60, describe="the operator to die")
    return base, issuer


def test_values_left_by_a_killed_operator_are_seen_in_bind_and_removed_after_restart(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    base, _ = killed_mid_order(lab, k, namespace, operator_factory, "answer_challenge")
    # Killed right after the CA was told to validate: the value is in BIND, for anyone to see.
    left = txt_at(lab, challenge_name(base))
    assert len(left) >= 1, "no TXT value in BIND while the CA validates"
    obj = certificate(k, namespace, "web")
    journaled = {
        (a.get("challenge") or {}).get("recordValue")
        for a in (obj["status"].get("order") or {}).get("authorizations") or []
    }
    assert left <= journaled, (left, journaled)

    dns01_operator(lab, operator_factory, namespace)
    wait_revision(k, namespace, "web", 1)
    wait_for(
        lambda: not txt_at(lab, challenge_name(base)),
        timeout=30,
        describe=lambda: f"the values gone from BIND, found {txt_at(lab, challenge_name(base))}",
    )


def test_a_certificate_deleted_mid_order_while_the_operator_is_down_has_its_values_removed(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    base, _ = killed_mid_order(lab, k, namespace, operator_factory, "present")
    assert txt_at(lab, challenge_name(base)), "the first value was not added"
    # Deleted while nobody runs: the finalizer keeps it until its values are removed.
    k.delete(ours_path("certificates", namespace, "web"))
    held = certificate(k, namespace, "web")
    assert held["metadata"].get("deletionTimestamp"), held["metadata"]

    dns01_operator(lab, operator_factory, namespace)
    wait_for(
        lambda: k.get(ours_path("certificates", namespace, "web")) is None,
        timeout=60,
        describe=lambda: "the Certificate gone\n" + explain(k, certificate(k, namespace, "web")),
    )
    assert txt_at(lab, challenge_name(base)) == set()


def test_a_namespace_deleted_mid_order_while_the_operator_is_down_is_not_held_forever(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    base, issuer = killed_mid_order(lab, k, namespace, operator_factory, "present")
    assert txt_at(lab, challenge_name(base)), "the first value was not added"
    # The whole namespace goes while nobody runs: its Issuer and TSIG Secret go first, so the
    # value cannot be removed any more; the Certificate must still let the namespace go.
    k.delete(core_path("namespaces", None, namespace))
    wait_for(
        lambda: (
            k.get(ours_path("issuers", namespace, issuer)) is None
            and k.get(core_path("secrets", namespace, "tsig")) is None
        ),
        timeout=60,
        describe="the namespace controller to delete the Issuer and the TSIG Secret",
    )
    second = dns01_operator(lab, operator_factory, namespace)
    wait_for(
        lambda: k.get(ours_path("certificates", namespace, "web")) is None,
        timeout=30,
        describe=lambda: "the Certificate gone\n" + explain(k, certificate(k, namespace, "web")),
    )
    # What could not be removed (the TSIG key went with the namespace) is named in the log, for
    # a person to remove (an Event cannot be posted into a namespace being deleted).
    left = txt_at(lab, challenge_name(base))
    assert left, "the value was removed after all: the test no longer shows what it claims"
    for value in left:
        assert f"could not remove TXT {value}" in second.log_text()


def test_a_wrong_tsig_secret_says_what_bind_answered(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    dns01_operator(lab, operator_factory, namespace)
    base, wanted = names(lab)
    wrong = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    issuer = dns01_issuer(lab, k, namespace, tsig=wrong)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=wanted)

    def refused() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        ready = condition(obj, "Ready") or {}
        return (
            obj
            if ready.get("status") == "False" and "NOTAUTH" in ready.get("message", "")
            else None
        )

    obj = wait_for(
        refused,
        timeout=60,
        describe=lambda: (
            "Ready=False with BIND's refusal\n" + explain(k, certificate(k, namespace, "web"))
        ),
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert lab.env["BIND_ADDR"] in message and "BADSIG" in message, message
    assert obj["status"]["lastFailure"]["reason"] == "dnsUpdate", obj["status"]
    assert txt_at(lab, challenge_name(base)) == set()
