"""Day-2 observability in the lab: /metrics, Events, the CLI and JSON logs, against one operator.

One namespace holds the four situations an operator of acmebridge meets, set up once for the
module (each issuance costs seconds, and every test here only reads):

- ``web``: issued by Pebble, Ready.
- ``unreachable``: the CA cannot reach the solver. The cluster's DNS (what the operator's
  HTTP-01 self check asks, a stub here) sends the name to the ingress, so the self check passes
  and the challenge is answered; the CA's DNS (pebble-challtestsrv) has a stale record pointing
  at 127.0.0.2, where nothing listens, so Pebble's validation fails with a ``connection``
  problem: a real failed challenge, counted as an issuance failure.
- ``misrouted``: its Issuer's solver uses an ingress class the lab's ingress does not serve. The
  self check gets HTTP 404, so the operator never answers the challenge (which would make the
  order invalid): the Certificate waits, and says why. Not a failure.
- ``orphan``: names an Issuer that does not exist: Ready=False IssuerNotFound. Not an issuance
  failure either, nor is ``conflict``, whose Secret name is taken by someone else's Secret.

The operator logs JSON at DEBUG, so the logs can be checked for object fields and key material.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from prometheus_client.parser import text_string_to_metric_families

from acmebridge.adapters.kube import Kube, core_path, group_path
from acmebridge.domain.solvers import SOLVER_LABEL
from acmebridge.domain.timefmt import parse_time
from tests.conftest import TEST_LABEL, namespace_name
from tests.lab.conftest import acme_spec, b64_file, make_certificate, make_issuer
from tests.lab.operator_proc import OperatorProcess, start_operator
from tests.lab.waits import condition, describe_events, get_object, wait_for

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90
GROUP, VERSION = "acmebridge.io", "v1alpha1"
#: nothing listens here: the CA's stale DNS record for the ``unreachable`` name points at it
NOWHERE = "127.0.0.2"


# -- the cluster's DNS, as the operator's self check sees it ------------------------------------


class StubResolver:
    """A DNS server on loopback answering every A query with 127.0.0.1, as challtestsrv does by
    default: the view of DNS inside the cluster, where the names lead to the ingress."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            response = dns.message.make_response(query)
            for q in query.question:
                if q.rdtype == dns.rdatatype.A:
                    response.answer.append(dns.rrset.from_text(q.name, 0, "IN", "A", "127.0.0.1"))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def challtestsrv(lab: Any, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        lab.challtestsrv_url + path, data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200, f"challtestsrv {path}: HTTP {resp.status}"


# -- the module's world ----------------------------------------------------------------------


@dataclass
class World:
    k: Kube
    ns: str
    operator: OperatorProcess
    env: dict[str, str]

    def cert(self, name: str) -> dict[str, Any]:
        obj = get_object(self.k.api, GROUP, VERSION, "certificates", self.ns, name)
        assert obj is not None, f"Certificate {self.ns}/{name} does not exist"
        return obj

    def events(self) -> list[dict[str, Any]]:
        return self.k.list(core_path("events", self.ns))

    def reasons(self, name: str) -> set[str]:
        return {e["reason"] for e in self.events() if e["involvedObject"].get("name") == name}

    def explain(self, name: str) -> str:
        obj = self.cert(name)
        return (
            f"status: {json.dumps(obj.get('status'), indent=1)}\n"
            f"events:\n{describe_events(self.k.api, obj)}"
        )

    def metrics(self) -> Metrics:
        return Metrics(self.operator.metrics())

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "acmebridge"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env or self.env,
        )


class Metrics:
    """One scrape of /metrics, parsed by prometheus_client's own text parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, metric: str, /, **labels: str) -> float | None:
        for s in self.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        return None

    def series(self, metric: str) -> list[dict[str, str]]:
        return [dict(s.labels) for s in self.samples if s.name == metric]


def _wait_cert(world: World, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> None:
    wait_for(
        lambda: check(world.cert(name)),
        timeout=TIMEOUT,
        interval=0.3,
        describe=lambda: f"Certificate {world.ns}/{name} {what}\n{world.explain(name)}",
    )


def _ready_is(status: str, reason: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        c = condition(obj, "Ready")
        return bool(c and c["status"] == status and (reason is None or c["reason"] == reason))

    return check


def _issuing_waits_on(hint: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        c = condition(obj, "Issuing")
        return bool(c and c["status"] == "True" and hint in c.get("message", ""))

    return check


@pytest.fixture(scope="module")
def world(lab: Any, k: Kube) -> Iterator[World]:
    ns = namespace_name("observability")
    unreachable_host = f"unreachable.{ns}.lab.test"
    k.create(
        core_path("namespaces", None), {"metadata": {"name": ns, "labels": {TEST_LABEL: "true"}}}
    )
    resolver = StubResolver()
    operator: OperatorProcess | None = None
    challtestsrv(lab, "/add-a", {"host": unreachable_host + ".", "addresses": [NOWHERE]})
    try:
        wait_for(
            lambda: k.get(core_path("serviceaccounts", ns, "default")),
            timeout=30,
            describe=f"the default ServiceAccount in namespace {ns}",
        )
        operator = start_operator(
            {**lab.env, "LAB_DNS_SERVER": resolver.address},
            name="operator-observability",
            extra=[f"--namespace={ns}", "--log-format", "json"],
        )
        cli_env = {
            **os.environ,
            "KUBECONFIG": lab.env["KUBECONFIG"],
            "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}",
        }
        w = World(k, ns, operator, cli_env)
        make_issuer(
            k, ns, "pebble", acme_spec(lab, issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]))
        )
        misrouted = [{"http01": {"ingress": {"ingressClassName": "not-served-by-the-lab"}}}]
        make_issuer(k, ns, "misrouted", acme_spec(lab, solvers=misrouted))
        for name, issuer, host in (
            ("web", "pebble", f"web.{ns}.lab.test"),
            ("again", "pebble", f"again.{ns}.lab.test"),
            ("unreachable", "pebble", unreachable_host),
            ("misrouted", "misrouted", f"misrouted.{ns}.lab.test"),
            ("orphan", "missing", f"orphan.{ns}.lab.test"),
        ):
            make_certificate(k, ns, name, issuerRef={"name": issuer}, dnsNames=[host])
        # A Secret someone else made, which the Certificate ``conflict`` names.
        k.create(
            core_path("secrets", ns),
            {"metadata": {"name": "taken"}, "type": "Opaque", "data": {"a": "Yg=="}},
        )
        make_certificate(
            k,
            ns,
            "conflict",
            issuerRef={"name": "pebble"},
            secretName="taken",
            dnsNames=[f"conflict.{ns}.lab.test"],
        )
        _wait_cert(w, "web", _ready_is("True"), "to be Ready")
        _wait_cert(w, "again", _ready_is("True"), "to be Ready")
        _wait_cert(
            w,
            "unreachable",
            lambda o: int((o.get("status") or {}).get("failedIssuanceAttempts") or 0) >= 1,
            "to record a failed issuance attempt",
        )
        _wait_cert(w, "misrouted", _issuing_waits_on("HTTP 404"), "to wait on its self check")
        _wait_cert(w, "orphan", _ready_is("False", "IssuerNotFound"), "to be IssuerNotFound")
        _wait_cert(w, "conflict", _ready_is("False", "SecretConflict"), "to be SecretConflict")
        yield w
    finally:
        if operator is not None:
            operator.stop()
            print(f"operator log: {operator.log_path}")
        resolver.close()
        with contextlib.suppress(OSError):
            challtestsrv(lab, "/clear-a", {"host": unreachable_host + "."})
        k.delete(core_path("namespaces", None, ns))


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_describe_an_issued_certificate(world: World) -> None:
    cert = world.cert("web")
    status = cert["status"]
    who = {"namespace": world.ns, "name": "web"}
    # The gauges are set when the reconcile that wrote the status ends (after its cleanup).
    m = wait_for(
        lambda: (
            (m := world.metrics()).value(
                "acmebridge_certificate_ready_status", **who, condition="True"
            )
            == 1
            and m
        ),
        timeout=10,
        describe=lambda: f"the ready gauge of web to be 1 in\n{world.metrics().text}",
    )
    assert m.value("acmebridge_certificate_ready_status", **who, condition="False") == 0
    for metric, field in (
        ("acmebridge_certificate_expiration_timestamp_seconds", "notAfter"),
        ("acmebridge_certificate_not_before_timestamp_seconds", "notBefore"),
        ("acmebridge_certificate_renewal_timestamp_seconds", "renewalTime"),
    ):
        assert m.value(metric, **who) == parse_time(status[field]).timestamp(), metric
    for kind in ("new_order", "finalize", "download_certificate"):
        assert (m.value("acmebridge_acme_client_requests_total", kind=kind, status="ok") or 0) > 0
        count = m.value("acmebridge_acme_client_request_duration_seconds_count", kind=kind)
        assert (count or 0) > 0, kind
    assert (m.value("acmebridge_issuance_duration_seconds_count") or 0) >= 2  # web and again
    assert (m.value("acmebridge_issuance_duration_seconds_sum") or 0) > 0
    assert (m.value("acmebridge_certificates_issued_total") or 0) >= 2
    issuer = {"kind": "Issuer", "namespace": world.ns, "name": "pebble"}
    assert m.value("acmebridge_issuer_ready_status", **issuer, condition="True") == 1
    assert (m.value("acmebridge_controller_reconcile_total", kind="certificates") or 0) > 0
    assert (m.value("acmebridge_controller_reconcile_total", kind="issuers") or 0) > 0


def test_a_failed_challenge_is_an_issuance_failure_and_a_missing_issuer_is_not(
    world: World,
) -> None:
    cert = world.cert("unreachable")
    ready = condition(cert, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "Failed"
    assert NOWHERE in ready["message"] and "connection" in ready["message"], ready
    m = wait_for(
        lambda: (
            (m := world.metrics()).value("acmebridge_issuance_failures_total", reason="connection")
            and m
        ),
        timeout=10,
        describe=lambda: f"a connection failure in\n{world.metrics().text}",
    )
    reasons = {s["reason"] for s in m.series("acmebridge_issuance_failures_total")}
    # Neither the missing issuer, the foreign Secret nor the waiting self check is an issuance
    # failure.
    assert reasons == {"connection"}, reasons
    assert (m.value("acmebridge_acme_client_requests_total", kind="answer_challenge") or 0) > 0
    for name in ("unreachable", "orphan", "conflict"):
        who = {"namespace": world.ns, "name": name}
        assert m.value("acmebridge_certificate_ready_status", **who, condition="False") == 1
        assert m.value("acmebridge_certificate_expiration_timestamp_seconds", **who) is None
    misrouted = m.value(
        "acmebridge_certificate_ready_status",
        namespace=world.ns,
        name="misrouted",
        condition="True",
    )
    assert misrouted != 1


def test_the_solver_gauge_counts_the_solver_pods_that_exist(world: World) -> None:
    # misrouted keeps its solver Pod (with its Service and Ingress) while it waits; the others'
    # are deleted.
    def live() -> int:
        return len(world.k.list(core_path("pods", world.ns), label_selector=SOLVER_LABEL))

    wait_for(
        lambda: world.metrics().value("acmebridge_http01_solver_pods") == live() == 1,
        timeout=30,
        describe=lambda: (
            f"the gauge ({world.metrics().value('acmebridge_http01_solver_pods')}) to equal "
            f"the solver Pods in the namespace ({live()}), 1 for misrouted"
        ),
    )


# -- events ----------------------------------------------------------------------------------


def test_events_say_each_step_and_never_carry_key_material(world: World) -> None:
    # Events mark what a user looks for: an issuance started (with its order) and ended; the
    # steps in between are in the Issuing condition and status.order, not an Event each.
    web = world.reasons("web")
    assert {"Issuing", "Issued"} <= web, web
    assert {"Issuing", "Failed"} <= world.reasons("unreachable")
    assert "IssuerNotFound" in world.reasons("orphan")
    assert "SecretConflict" in world.reasons("conflict")
    assert "Issuing" in world.reasons("misrouted")
    events = world.events()
    failed = [e for e in events if e["reason"] == "Failed"]
    assert all(e["type"] == "Warning" for e in failed)
    assert any(NOWHERE in e["message"] for e in failed), [e["message"] for e in failed]
    # Aggregated: one Event per object, reason and message, its count raised on repeats.
    keys = [(e["involvedObject"]["uid"], e["reason"], e["message"]) for e in events]
    assert len(keys) == len(set(keys))
    for e in events:
        assert "PRIVATE KEY" not in e["message"], e


# -- the CLI ---------------------------------------------------------------------------------


def test_status_lists_certificates_and_explains_those_not_ready(world: World) -> None:
    result = world.cli("status", "-n", world.ns)
    assert result.returncode == 1, result
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "READY", "REASON"]
    web_row = next(line for line in lines if line.startswith("web "))
    assert web_row.split()[1:3] == ["True", "Ready"]
    assert world.cert("web")["status"]["notAfter"] in web_row
    assert f"Certificate {world.ns}/unreachable is not ready:" in out
    assert "event Failed" in out and NOWHERE in out
    assert f"Certificate {world.ns}/orphan is not ready:" in out
    assert "Ready=False IssuerNotFound: Issuer 'missing' does not exist" in out
    assert f"Certificate {world.ns}/misrouted is not ready:" in out
    assert "self check" in out and "HTTP 404" in out
    # Its Issuer was not ready when it was created; once issuing, Ready no longer says so.
    misrouted = condition(world.cert("misrouted"), "Ready")
    assert misrouted is None or misrouted["reason"] != "IssuerNotReady", misrouted
    assert f"Certificate {world.ns}/web is not ready" not in out

    one = world.cli("status", "-n", world.ns, "web")
    assert one.returncode == 0, one
    assert "not ready" not in one.stdout


def test_status_as_json(world: World) -> None:
    result = world.cli("status", "-n", world.ns, "-o", "json")
    assert result.returncode == 1, result
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"web", "again", "unreachable", "misrouted", "orphan", "conflict"}
    assert rows["web"]["ready"] == "True" and rows["web"]["problems"] == []
    assert rows["web"]["notAfter"] == world.cert("web")["status"]["notAfter"]
    assert rows["orphan"]["reason"] == "IssuerNotFound"
    assert rows["unreachable"]["problems"], rows["unreachable"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(("status", "nothing-here"), 1, "not found", id="status of a missing name"),
        pytest.param(("renew", "nothing-here"), 1, "not found", id="renew of a missing name"),
        pytest.param(
            ("inspect", "secret", "nothing-here"), 1, "not found", id="inspect a missing Secret"
        ),
        pytest.param(("status", "--no-such-flag"), 2, "unrecognized", id="a usage error"),
    ],
)
def test_exit_codes_for_scripts(
    world: World, args: tuple[str, ...], code: int, message: str
) -> None:
    result = world.cli(*args[:1], "-n", world.ns, *args[1:])
    assert result.returncode == code, result
    assert message in result.stderr


def test_an_unreachable_cluster_exits_2(world: World, tmp_path: Path) -> None:
    config = json.loads(Path(world.env["KUBECONFIG"]).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens on port 1
    broken = tmp_path / "kubeconfig"
    broken.write_text(json.dumps(config))
    result = world.cli("status", "-n", world.ns, env={**world.env, "KUBECONFIG": str(broken)})
    assert result.returncode == 2, result
    assert "cannot reach the API server" in result.stderr


def test_a_reader_gets_status_and_renew_without_permission_exits_2(
    world: World, tmp_path: Path
) -> None:
    # A user who may read Certificates but not update their status, as a namespace viewer.
    rbac = group_path("rbac.authorization.k8s.io", "v1", "roles", world.ns)
    world.k.create(core_path("serviceaccounts", world.ns), {"metadata": {"name": "viewer"}})
    world.k.create(
        rbac,
        {
            "metadata": {"name": "viewer"},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["certificates"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    world.k.create(
        group_path("rbac.authorization.k8s.io", "v1", "rolebindings", world.ns),
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": world.ns}],
        },
    )
    token = world.k.create(
        core_path("serviceaccounts", world.ns, "viewer") + "/token",
        {"spec": {"expirationSeconds": 600}},
    )["status"]["token"]
    config = json.loads(Path(world.env["KUBECONFIG"]).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    viewer = tmp_path / "kubeconfig"
    viewer.write_text(json.dumps(config))
    env = {**world.env, "KUBECONFIG": str(viewer)}

    assert world.cli("status", "-n", world.ns, "web", env=env).returncode == 0
    # Without access to Events, status still explains from the conditions.
    orphan = world.cli("status", "-n", world.ns, "orphan", env=env)
    assert orphan.returncode == 1, orphan
    assert "IssuerNotFound" in orphan.stdout
    assert "not allowed to list Events" in orphan.stderr
    result = world.cli("renew", "-n", world.ns, "web", env=env)
    assert result.returncode == 2, result
    assert "permission refused" in result.stderr and "renew needs" in result.stderr


def test_inspect_secret_shows_the_certificate_and_checks_it(world: World) -> None:
    result = world.cli("inspect", "secret", "-n", world.ns, "web-tls")
    assert result.returncode == 0, result
    out = result.stdout
    for expected in (
        f"web.{world.ns}.lab.test",
        "Key:",
        "ECDSA 256",
        "SHA-256:",
        "Public key SHA-256:",
        "Chain:",
        "ca.crt:",
        "Pebble Root CA",
        "[ok] tls.key: matches the certificate",
        "[ok] names",
        "[ok] ca.crt: signed the top of the chain",
        "[ok] status",
    ):
        assert expected in out, (expected, out)
    assert "FAIL" not in out
    assert "PRIVATE KEY" not in out


def test_inspect_secret_finds_a_key_that_does_not_match(world: World) -> None:
    web = world.k.get(core_path("secrets", world.ns, "web-tls"))
    again = world.k.get(core_path("secrets", world.ns, "again-tls"))
    assert web is not None and again is not None
    meta = web["metadata"]
    tampered = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "tampered-tls",
            "annotations": meta["annotations"],
            "labels": meta["labels"],
        },
        # web's certificate with another certificate's key
        "data": {"tls.crt": web["data"]["tls.crt"], "tls.key": again["data"]["tls.key"]},
    }
    world.k.create(core_path("secrets", world.ns), tampered)
    result = world.cli("inspect", "secret", "-n", world.ns, "tampered-tls")
    assert result.returncode == 1, result
    assert "[FAIL] tls.key: does NOT match the certificate's public key" in result.stdout
    assert base64.b64decode(again["data"]["tls.key"]).decode() not in result.stdout


def test_renew_reissues_the_certificate(world: World) -> None:
    before = world.cert("again")["status"]["revision"]
    issued = world.metrics().value("acmebridge_certificates_issued_total") or 0
    result = world.cli("renew", "-n", world.ns, "again")
    assert result.returncode == 0, result
    assert f"Manually triggered issuance of Certificate {world.ns}/again" in result.stdout
    _wait_cert(
        world,
        "again",
        lambda o: (o.get("status") or {}).get("revision") == before + 1 and _ready_is("True")(o),
        f"to reach revision {before + 1}",
    )
    assert "Renewed" in world.reasons("again")
    wait_for(
        lambda: (world.metrics().value("acmebridge_certificates_issued_total") or 0) > issued,
        timeout=10,
        describe="acmebridge_certificates_issued_total to count the renewal",
    )


# -- logs ------------------------------------------------------------------------------------


def test_json_logs_name_the_certificate_and_hold_no_key(world: World) -> None:
    text = world.operator.log_text()
    assert "PRIVATE KEY" not in text
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    assert entries, text[-2000:]
    about = [e for e in entries if e.get("namespace") == world.ns]
    named = {e.get("name") for e in about}
    assert {"web", "unreachable", "orphan"} <= named, named
    for e in about:
        assert e["kind"] in ("Certificate", "Issuer"), e
    # Every line of ours that names a certificate of this namespace carries it as fields too.
    for e in entries:
        message = e["message"]
        if e["logger"].startswith("acmebridge") and f"Certificate {world.ns}/" in message:
            name = message.split(f"Certificate {world.ns}/", 1)[1].split(":", 1)[0]
            assert (e.get("namespace"), e.get("name")) == (world.ns, name), e
