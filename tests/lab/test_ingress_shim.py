"""Certificates from annotated Ingresses, in the lab: the real API server, the real garbage
collector, Pebble validating HTTP-01 through the ingress stand-in, and the operator as users run
it. What a user sees: the Certificate, the Secret Pebble's certificate lands in, and the Events
on their Ingress."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acmebridge.adapters.kube import Kube, core_path, group_path, ours_path
from acmebridge.domain.ingress_shim import INGRESS_LABEL
from tests.lab import manifests
from tests.lab.conftest import acme_spec, b64_file, make_certificate, make_issuer
from tests.lab.operator_proc import OperatorProcess
from tests.lab.test_issuance import load_chain, ready, sans, secret_data
from tests.lab.waits import condition, wait_for

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT = 90


def ingress_path(namespace: str, name: str | None = None) -> str:
    return group_path("networking.k8s.io", "v1", "ingresses", namespace, name)


def host(namespace: str, label: str) -> str:
    return f"{label}.{namespace}.lab.test"


def apply_ingress(
    k: Kube, namespace: str, tls: list[dict[str, Any]], annotations: dict[str, str]
) -> dict[str, Any]:
    body = manifests.ingress(namespace, "shop", tls, annotations=annotations)
    return k.create(ingress_path(namespace), body)


def patch_ingress(k: Kube, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
    return k.merge_patch(ingress_path(namespace, "shop"), patch)


def certificate(k: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return k.get(ours_path("certificates", namespace, name))


def ingress_events(k: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in k.list(core_path("events", namespace))
        if (e.get("involvedObject") or {}).get("kind") == "Ingress"
        and e["involvedObject"].get("name") == "shop"
        and e.get("reason") == reason
    ]


def wait_event(k: Kube, namespace: str, reason: str, *hints: str) -> dict[str, Any]:
    """The Ingress's Event with ``reason`` whose message holds every hint."""

    def found() -> dict[str, Any] | None:
        for e in ingress_events(k, namespace, reason):
            if all(h in e.get("message", "") for h in hints):
                return e
        return None

    def seen() -> str:
        events = k.list(core_path("events", namespace))
        lines = [f"{e['involvedObject'].get('kind')} {e['reason']}: {e['message']}" for e in events]
        return f"Event {reason} on Ingress shop with {hints}; Events:\n" + "\n".join(lines)

    return wait_for(found, timeout=TIMEOUT, describe=seen)


def wait_gone(k: Kube, namespace: str, name: str) -> None:
    wait_for(
        lambda: certificate(k, namespace, name) is None,
        timeout=TIMEOUT,
        describe=f"Certificate {namespace}/{name} to be deleted",
    )


def leaf_names(k: Kube, namespace: str, secret: str) -> set[str]:
    return sans(load_chain(secret_data(k, namespace, secret)["tls.crt"])[0])[0]


def assert_healthy(op: OperatorProcess) -> None:
    assert op.alive(), op.log_text()[-3000:]
    assert "reconcile of ('ingresses'" not in op.log_text(), "an Ingress reconcile raised"


@pytest.fixture
def issuer(lab: Any, k: Kube, namespace: str, operator: OperatorProcess) -> str:
    make_issuer(
        k, namespace, "pebble", acme_spec(lab, issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]))
    )
    ready(k, namespace, "pebble", plural="issuers")
    return "pebble"


def test_an_annotated_ingress_gets_its_certificate_and_secret(
    k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    names = [host(namespace, "shop"), host(namespace, "www")]
    made = apply_ingress(
        k, namespace, [{"hosts": names, "secretName": "shop-tls"}], {"acmebridge.io/issuer": issuer}
    )
    cert = ready(k, namespace, "shop-tls")
    assert cert["spec"]["dnsNames"] == names
    assert cert["spec"]["issuerRef"] == {"name": issuer, "kind": "Issuer", "group": "acmebridge.io"}
    assert cert["metadata"]["labels"][INGRESS_LABEL] == "shop"
    (owner,) = cert["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "Ingress",
        made["metadata"]["uid"],
        True,
    )
    assert leaf_names(k, namespace, "shop-tls") == set(names)
    wait_event(k, namespace, "CreateCertificate", "'shop-tls'")
    assert_healthy(operator)


def test_a_new_host_reissues_the_certificate_with_the_new_name(
    k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    first = host(namespace, "shop")
    apply_ingress(
        k,
        namespace,
        [{"hosts": [first], "secretName": "shop-tls"}],
        {"acmebridge.io/issuer": issuer},
    )
    before = ready(k, namespace, "shop-tls")
    assert leaf_names(k, namespace, "shop-tls") == {first}
    added = host(namespace, "new")
    patch_ingress(
        k, namespace, {"spec": {"tls": [{"hosts": [first, added], "secretName": "shop-tls"}]}}
    )

    wait_for(
        lambda: leaf_names(k, namespace, "shop-tls") == {first, added},
        timeout=TIMEOUT,
        describe=lambda: (
            f"a certificate for {first} and {added}; the Secret holds "
            f"{leaf_names(k, namespace, 'shop-tls')}"
        ),
    )
    after = ready(k, namespace, "shop-tls")
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "updated in place"
    assert after["spec"]["dnsNames"] == [first, added]
    wait_event(k, namespace, "UpdateCertificate", "'shop-tls'", added)
    assert_healthy(operator)


def test_the_cert_manager_annotations_are_aliases(
    k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    name = host(namespace, "legacy")
    apply_ingress(
        k,
        namespace,
        [{"hosts": [name], "secretName": "legacy-tls"}],
        {"cert-manager.io/issuer": issuer, "cert-manager.io/private-key-algorithm": "RSA"},
    )
    cert = ready(k, namespace, "legacy-tls")
    assert cert["spec"]["issuerRef"]["name"] == issuer
    leaf = load_chain(secret_data(k, namespace, "legacy-tls")["tls.crt"])[0]
    assert sans(leaf)[0] == {name}
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey), "the key annotation applies too"
    assert_healthy(operator)


def test_removing_the_annotation_deletes_the_certificates_and_the_secrets_stay(
    k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    shop, api = host(namespace, "shop"), host(namespace, "api")
    tls = [{"hosts": [shop], "secretName": "shop-tls"}, {"hosts": [api], "secretName": "api-tls"}]
    apply_ingress(k, namespace, tls, {"acmebridge.io/issuer": issuer})
    ready(k, namespace, "shop-tls")
    ready(k, namespace, "api-tls")
    api_secret = k.get(core_path("secrets", namespace, "api-tls"))
    shop_secret = k.get(core_path("secrets", namespace, "shop-tls"))

    # A TLS entry removed: its Certificate goes, the other stays.
    patch_ingress(k, namespace, {"spec": {"tls": tls[:1]}})
    wait_gone(k, namespace, "api-tls")
    wait_event(k, namespace, "DeleteCertificate", "'api-tls'", "stays")
    assert certificate(k, namespace, "shop-tls") is not None

    # The annotation removed: the last one goes too.
    patch_ingress(k, namespace, {"metadata": {"annotations": {"acmebridge.io/issuer": None}}})
    wait_gone(k, namespace, "shop-tls")
    wait_event(k, namespace, "DeleteCertificate", "'shop-tls'")

    # The Secrets stay exactly as they were, for the Pods that mount them.
    for before in (api_secret, shop_secret):
        assert before is not None
        after = k.get(core_path("secrets", namespace, before["metadata"]["name"]))
        assert after is not None
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["data"] == before["data"]
    assert_healthy(operator)


def test_a_bad_annotation_gives_a_warning_event_and_changes_nothing(
    k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    tls = [{"hosts": [host(namespace, "shop")], "secretName": "shop-tls"}]
    apply_ingress(
        k, namespace, tls, {"acmebridge.io/issuer": "ca", "acmebridge.io/duration": "90d"}
    )
    event = wait_event(k, namespace, "BadConfig", "acmebridge.io/duration", "2160h")
    assert event["type"] == "Warning"
    assert certificate(k, namespace, "shop-tls") is None, "a bad annotation makes nothing"

    patch_ingress(k, namespace, {"metadata": {"annotations": {"acmebridge.io/duration": "2160h"}}})
    made = wait_for(
        lambda: certificate(k, namespace, "shop-tls"),
        timeout=TIMEOUT,
        describe="the Certificate once the annotation is fixed",
    )
    assert made["spec"]["duration"] == "2160h"

    # Broken again: the Certificate that exists is neither changed nor deleted.
    patch_ingress(
        k,
        namespace,
        {
            "metadata": {
                "annotations": {
                    "acmebridge.io/cluster-issuer": "ca",
                    "acmebridge.io/duration": "1h",
                }
            }
        },
    )
    wait_event(k, namespace, "BadConfig", "acmebridge.io/issuer", "keep one")
    kept = certificate(k, namespace, "shop-tls")
    assert kept is not None
    assert kept["metadata"]["generation"] == made["metadata"]["generation"]
    assert kept["spec"] == made["spec"]
    assert_healthy(operator)


def test_an_issuer_that_does_not_exist_gives_an_event_and_the_certificate_waits_for_it(
    lab: Any, k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    name = host(namespace, "early")
    apply_ingress(
        k,
        namespace,
        [{"hosts": [name], "secretName": "early-tls"}],
        {"acmebridge.io/issuer": "later"},
    )
    event = wait_event(k, namespace, "IssuerNotFound", "'later'", "create it")
    assert event["type"] == "Warning"
    waiting = condition(ready(k, namespace, "early-tls", status="False"), "Ready")
    assert waiting is not None and waiting["reason"] == "IssuerNotFound"

    make_issuer(k, namespace, "later", acme_spec(lab))
    ready(k, namespace, "early-tls")
    assert leaf_names(k, namespace, "early-tls") == {name}
    assert_healthy(operator)


def test_a_users_certificate_of_the_same_name_is_a_conflict_left_untouched(
    k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    mine = make_certificate(
        k, namespace, "shop-tls", issuerRef={"name": "ca"}, dnsNames=["mine.lab.test"]
    )
    apply_ingress(
        k,
        namespace,
        [{"hosts": [host(namespace, "shop")], "secretName": "shop-tls"}],
        {"acmebridge.io/issuer": "ca"},
    )
    event = wait_event(k, namespace, "CertificateConflict", "'shop-tls'", "untouched")
    assert event["type"] == "Warning"
    now = certificate(k, namespace, "shop-tls")
    assert now is not None
    assert now["metadata"]["uid"] == mine["metadata"]["uid"]
    assert now["spec"] == mine["spec"]
    assert now["metadata"].get("ownerReferences") is None
    assert INGRESS_LABEL not in (now["metadata"].get("labels") or {})

    # Once the user deletes theirs, the Ingress gets its own.
    k.delete(ours_path("certificates", namespace, "shop-tls"))
    wait_for(
        lambda: (
            INGRESS_LABEL
            in ((certificate(k, namespace, "shop-tls") or {}).get("metadata") or {}).get(
                "labels", {}
            )
        ),
        timeout=TIMEOUT,
        describe="the Ingress's own Certificate after the user's was deleted",
    )
    assert_healthy(operator)


def test_deleting_the_ingress_lets_the_garbage_collector_take_its_certificate(
    k: Kube, namespace: str, operator: OperatorProcess
) -> None:
    apply_ingress(
        k,
        namespace,
        [{"hosts": [host(namespace, "shop")], "secretName": "shop-tls"}],
        {"acmebridge.io/issuer": "ca"},
    )
    wait_for(
        lambda: certificate(k, namespace, "shop-tls"),
        timeout=TIMEOUT,
        describe="the Certificate of the Ingress",
    )
    k.delete(ingress_path(namespace, "shop"))
    wait_gone(k, namespace, "shop-tls")
    assert_healthy(operator)


def cert_manager_secret(namespace: str, name: str, dns_name: str) -> dict[str, Any]:
    """A TLS Secret as cert-manager leaves it behind: its annotations, no acmebridge marks."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "left by cert-manager")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "cert-manager.io/certificate-name": name,
                "cert-manager.io/issuer-name": "pebble",
                "cert-manager.io/issuer-kind": "Issuer",
            },
        },
        "data": {
            "tls.crt": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
            "tls.key": base64.b64encode(pem_key).decode(),
        },
    }


def test_a_secret_cert_manager_wrote_is_handed_over_and_reissued_in_place(
    lab: Any, k: Kube, namespace: str, issuer: str, operator: OperatorProcess
) -> None:
    # The migration docs/ingress.md describes: the Ingress keeps its cert-manager.io annotation,
    # the Secret cert-manager wrote is not taken without being handed over, then is re-issued.
    name = host(namespace, "moved")
    old = k.create(
        core_path("secrets", namespace), cert_manager_secret(namespace, "moved-tls", name)
    )
    apply_ingress(
        k,
        namespace,
        [{"hosts": [name], "secretName": "moved-tls"}],
        {"cert-manager.io/issuer": issuer},
    )
    refused = condition(ready(k, namespace, "moved-tls", status="False"), "Ready")
    assert refused is not None and refused["reason"] == "SecretConflict", refused
    untouched = k.get(core_path("secrets", namespace, "moved-tls"))
    assert untouched is not None and untouched["data"] == old["data"]

    cert = certificate(k, namespace, "moved-tls")
    assert cert is not None
    k.merge_patch(
        core_path("secrets", namespace, "moved-tls"),
        {
            "metadata": {
                "labels": {"acmebridge.io/certificate-name": "moved-tls"},
                "annotations": {"acmebridge.io/certificate-uid": cert["metadata"]["uid"]},
            }
        },
    )
    renew = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "acmebridge"), "renew", "-n", namespace, "moved-tls"],
        env={**os.environ, "KUBECONFIG": lab.env["KUBECONFIG"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert renew.returncode == 0, renew.stdout + renew.stderr
    ready(k, namespace, "moved-tls")
    after = k.get(core_path("secrets", namespace, "moved-tls"))
    assert after is not None and after["metadata"]["uid"] == old["metadata"]["uid"]
    leaf = load_chain(secret_data(k, namespace, "moved-tls")["tls.crt"])[0]
    assert leaf.issuer != leaf.subject, "Pebble's certificate replaced the self-signed one"
    assert sans(leaf)[0] == {name}
    assert_healthy(operator)
