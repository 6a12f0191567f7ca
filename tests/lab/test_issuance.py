"""End to end in the lab: Issuer/ClusterIssuer + Certificate -> ACME order at Pebble -> HTTP-01
through a solver Pod, Service and Ingress -> a kubernetes.io/tls Secret that verifies."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmebridge.adapters.kube import Kube, core_path, group_path, ours_path
from acmebridge.domain.solvers import SOLVER_LABEL
from tests.lab.conftest import acme_spec, b64_file, make_certificate, make_issuer
from tests.lab.operator_proc import OperatorProcess
from tests.lab.waits import condition, get_object, wait_for, wait_for_condition

pytestmark = pytest.mark.lab

TIMEOUT = 90


def ready(
    k: Kube,
    namespace: str,
    name: str,
    status: str = "True",
    plural: str = "certificates",
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    return wait_for_condition(
        k.api,
        "acmebridge.io",
        "v1alpha1",
        plural,
        namespace,
        name,
        "Ready",
        status,
        timeout=timeout,
    )


def ready_reason(k: Kube, namespace: str, name: str, reason: str, hint: str) -> dict[str, Any]:
    """Waits until Ready has ``reason`` and a message containing ``hint``."""

    def met() -> dict[str, Any] | None:
        obj = get_object(k.api, "acmebridge.io", "v1alpha1", "certificates", namespace, name)
        c = condition(obj, "Ready")
        return obj if c and c.get("reason") == reason and hint in c.get("message", "") else None

    def describe() -> str:
        obj = get_object(k.api, "acmebridge.io", "v1alpha1", "certificates", namespace, name)
        return f"Ready reason {reason} with {hint!r}; Ready is {condition(obj, 'Ready')}"

    return wait_for(met, timeout=TIMEOUT, describe=describe)


def secret_data(k: Kube, namespace: str, name: str) -> dict[str, bytes]:
    s = k.get(core_path("secrets", namespace, name))
    assert s is not None, f"Secret {namespace}/{name} does not exist"
    return {key: base64.b64decode(v) for key, v in (s.get("data") or {}).items()}


def load_chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def assert_chain_verifies_to(chain: list[x509.Certificate], root: x509.Certificate) -> None:
    for child, parent in zip(chain, [*chain[1:], root], strict=True):
        child.verify_directly_issued_by(parent)


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }


def key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, None)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def solver_objects(k: Kube, namespace: str) -> list[str]:
    found = []
    for path in (
        core_path("pods", namespace),
        core_path("services", namespace),
        group_path("networking.k8s.io", "v1", "ingresses", namespace),
    ):
        found += [o["metadata"]["name"] for o in k.list(path, label_selector=SOLVER_LABEL)]
    return found


@pytest.fixture
def issuer(lab: Any, k: Kube, namespace: str, operator: OperatorProcess) -> str:
    """A ready Issuer for Pebble whose issuingCABundle is Pebble's current root."""
    make_issuer(
        k, namespace, "pebble", acme_spec(lab, issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]))
    )
    ready(k, namespace, "pebble", plural="issuers")
    return "pebble"


@pytest.mark.parametrize(
    ("names", "ips"),
    [
        pytest.param(["one.issue.lab.test"], [], id="issues a certificate for one name"),
        pytest.param(
            ["a.issue.lab.test", "b.issue.lab.test", "c.issue.lab.test"],
            [],
            id="issues one certificate for several names",
        ),
        pytest.param([], ["127.0.0.1"], id="issues a certificate for an IP address"),
    ],
)
def test_issues_a_certificate_that_verifies(
    lab: Any, k: Kube, namespace: str, issuer: str, names: list[str], ips: list[str]
) -> None:
    started = time.monotonic()
    make_certificate(
        k, namespace, "web", issuerRef={"name": issuer}, dnsNames=names, ipAddresses=ips
    )
    cert = ready(k, namespace, "web")
    elapsed = time.monotonic() - started
    print(f"apply -> Ready took {elapsed:.1f}s")

    data = secret_data(k, namespace, "web-tls")
    chain = load_chain(data["tls.crt"])
    root = x509.load_pem_x509_certificate(Path(lab.env["PEBBLE_ROOT"]).read_bytes())
    assert_chain_verifies_to(chain, root)
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root
    dns, ip_sans = sans(chain[0])
    assert dns == set(names)
    assert ip_sans == {str(ipaddress.ip_address(i)) for i in ips}
    assert key_matches(chain[0], data["tls.key"])
    assert cert["status"]["notAfter"] and cert["status"]["renewalTime"]
    assert cert["status"]["revision"] == 1
    wait_for(
        lambda: not solver_objects(k, namespace),
        timeout=30,
        describe=lambda: f"solver objects left: {solver_objects(k, namespace)}",
    )
    secret = k.get(core_path("secrets", namespace, "web-tls"))
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    ann = secret["metadata"]["annotations"]
    assert ann["acmebridge.io/certificate-uid"] == cert["metadata"]["uid"]
    assert ann["acmebridge.io/issuer-name"] == issuer


def test_omits_ca_crt_when_the_root_cannot_be_proven(
    lab: Any, k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    # caBundle trusts Pebble's HTTPS, not its issuing root; no issuingCABundle is given, and
    # Pebble serves no root and no AIA: the operator must not guess.
    make_issuer(k, namespace, "pebble", acme_spec(lab))
    ready(k, namespace, "pebble", plural="issuers")
    make_certificate(
        k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["noca.issue.lab.test"]
    )
    cert = ready(k, namespace, "web")
    data = secret_data(k, namespace, "web-tls")
    assert "ca.crt" not in data
    msg = next(c for c in cert["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert "ca.crt is omitted" in msg


def test_a_cluster_issuer_serves_two_namespaces(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    request: pytest.FixtureRequest,
) -> None:
    name = f"pebble-{hashlib.sha256(namespace.encode()).hexdigest()[:8]}"
    other = f"{namespace[:50]}-b"
    k.create(core_path("namespaces", None), {"metadata": {"name": other}})
    request.addfinalizer(lambda: k.delete(core_path("namespaces", None, other)))
    operator_factory(namespace, other)
    spec = acme_spec(
        lab,
        issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]),
        privateKeySecretRef={"name": name},
    )
    make_issuer(k, None, name, spec)
    request.addfinalizer(lambda: k.delete(ours_path("clusterissuers", None, name)))
    ready(k, "", name, plural="clusterissuers")
    # The account key of a ClusterIssuer lives in the cluster-resource namespace.
    assert k.get(core_path("secrets", "acmebridge", name)) is not None
    for ns in (namespace, other):
        make_certificate(
            k,
            ns,
            "web",
            issuerRef={"name": name, "kind": "ClusterIssuer"},
            dnsNames=[f"web.{ns}.lab.test"],
        )
    for ns in (namespace, other):
        ready(k, ns, "web")
        assert load_chain(secret_data(k, ns, "web-tls")["tls.crt"])


def reconciles(operator: OperatorProcess) -> float:
    """How many Certificate reconciles the operator has run (its own metric)."""
    for line in operator.metrics().splitlines():
        if line.startswith('acmebridge_controller_reconcile_total{kind="certificates"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_never_overwrites_a_foreign_secret(
    lab: Any, k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    before = k.create(core_path("secrets", namespace), _foreign(namespace, "taken", b"not ours"))
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": issuer},
        secretName="taken",
        dnsNames=["taken.issue.lab.test"],
    )
    cert = ready(k, namespace, "web", status="False")
    cond = next(c for c in cert["status"]["conditions"] if c["type"] == "Ready")
    assert cond["reason"] == "SecretConflict"
    # Make the operator look again, and wait until it has: a wrong operator would act now.
    seen = reconciles(operator)
    k.merge_patch(
        ours_path("certificates", namespace, "web"), {"metadata": {"labels": {"poke": "1"}}}
    )
    wait_for(
        lambda: reconciles(operator) > seen,
        timeout=30,
        describe="the operator to reconcile the Certificate again",
    )
    after = k.get(core_path("secrets", namespace, "taken"))
    assert after is not None
    assert after["data"] == before["data"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_secret_created_during_the_order_is_not_overwritten(
    lab: Any, k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    # The solver's Ingress class is one no ingress controller serves: the order waits at the
    # self check, its Secret absent, until the test hands the Ingress to the lab's controller.
    held = [{"http01": {"ingress": {"ingressClassName": "held"}}}]
    make_issuer(k, namespace, "held", acme_spec(lab, solvers=held))
    ready(k, namespace, "held", plural="issuers")
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": "held"},
        secretName="late",
        dnsNames=["late.issue.lab.test"],
    )
    ingresses = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses"
    solver = wait_for(
        lambda: next(iter(k.list(ingresses, label_selector="acmebridge.io/solver")), None),
        timeout=30,
        describe="the solver Ingress",
    )
    # Steps of the same order after the one that found the Secret absent skip reading it.
    seen = reconciles(operator)
    wait_for(lambda: reconciles(operator) >= seen + 2, timeout=30, describe="two more steps")
    before = k.create(core_path("secrets", namespace), _foreign(namespace, "late", b"meanwhile"))
    k.merge_patch(
        f"{ingresses}/{solver['metadata']['name']}", {"spec": {"ingressClassName": "lab"}}
    )
    wait_for(
        lambda: _ready_reason(k, namespace, "web", "SecretConflict"),
        timeout=60,
        describe=lambda: f"SecretConflict: {k.get(ours_path('certificates', namespace, 'web'))}",
    )
    after = k.get(core_path("secrets", namespace, "late"))
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def _foreign(namespace: str, name: str, content: bytes) -> dict[str, Any]:
    """A Secret someone else made, under the name a Certificate will ask for."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"tls.crt": base64.b64encode(content).decode()},
    }


def _ready_reason(k: Kube, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    cert = k.get(ours_path("certificates", namespace, name)) or {}
    conditions = (cert.get("status") or {}).get("conditions") or []
    found = [c for c in conditions if c["type"] == "Ready" and c["reason"] == reason]
    return cert if found else None


@pytest.mark.parametrize(
    ("issuer_ref", "acme_overrides", "reason", "hint"),
    [
        pytest.param(
            {"name": "missing"},
            None,
            "IssuerNotFound",
            "does not exist",
            id="an unknown issuer is reported, not retried blindly",
        ),
        pytest.param(
            {"name": "bad"},
            {"caBundle": "WRONG"},
            "IssuerNotReady",
            "caBundle",
            id="a caBundle that does not match the server is reported",
        ),
        pytest.param(
            {"name": "bad"},
            {"server": "https://127.0.0.1:9/dir"},
            "ACMEServerUnavailable",
            "127.0.0.1:9",
            id="an unreachable ACME server is reported",
        ),
    ],
)
def test_broken_issuers_give_actionable_conditions_and_others_keep_working(
    lab: Any,
    k: Kube,
    namespace: str,
    issuer: str,
    issuer_ref: dict[str, str],
    acme_overrides: dict[str, Any] | None,
    reason: str,
    hint: str,
) -> None:
    if acme_overrides is not None:
        overrides = dict(acme_overrides)
        if overrides.get("caBundle") == "WRONG":
            # A real CA that did not sign Pebble's HTTPS certificate: Pebble's issuing root.
            overrides["caBundle"] = b64_file(lab.env["PEBBLE_ROOT"])
        make_issuer(k, namespace, "bad", acme_spec(lab, **overrides))
    make_certificate(
        k, namespace, "broken", issuerRef=issuer_ref, dnsNames=["broken.issue.lab.test"]
    )
    make_certificate(
        k, namespace, "fine", issuerRef={"name": issuer}, dnsNames=["fine.issue.lab.test"]
    )
    ready_reason(k, namespace, "broken", reason, hint)
    ready(k, namespace, "fine")
    events = k.list(core_path("events", namespace))
    assert any(e["reason"] == reason and e["involvedObject"]["name"] == "broken" for e in events), [
        e["reason"] for e in events
    ]
