"""Workload mTLS plumbing, pure parts: the trust bundle, the webhook's own serving certificate
and CA, and the MutatingWebhookConfiguration's policies."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification

from acmebridge.domain import trust, webhook_config, webhook_tls
from acmebridge.domain.webhook_tls import Plan, ServingMaterial

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = x509.load_pem_x509_certificate((FIXTURES / "root.pem").read_bytes())
OLD_ROOT = x509.load_pem_x509_certificate((FIXTURES / "old-root.pem").read_bytes())
NOW = datetime(2026, 6, 1, tzinfo=UTC)
HOSTS = ("acmebridge-webhook.pki.svc", "acmebridge-webhook.pki.svc.cluster.local")
DAY = timedelta(days=1)


# --- trust bundle -------------------------------------------------------------------------------


def test_the_bundle_is_deduplicated_ordered_and_stable() -> None:
    live = [c for c in (ROOT, OLD_ROOT) if c.not_valid_after_utc > NOW]
    assert live, "the fixtures must hold a root valid in 2026"
    one = trust.bundle_pem([ROOT, OLD_ROOT, ROOT], now=NOW)
    other = trust.bundle_pem([OLD_ROOT, ROOT], now=NOW)
    assert one == other
    assert len(x509.load_pem_x509_certificates(one.encode())) == len(live)


def test_expired_roots_leave_the_bundle() -> None:
    after = max(ROOT.not_valid_after_utc, OLD_ROOT.not_valid_after_utc) + DAY
    assert trust.bundle_pem([ROOT, OLD_ROOT], now=after) == ""


@pytest.mark.parametrize(
    ("labels", "wanted"),
    [
        pytest.param({"acmebridge.io/trust": "true"}, True, id="labelled true"),
        pytest.param({"acmebridge.io/trust": "yes"}, False, id="another value"),
        pytest.param({}, False, id="no label"),
    ],
)
def test_which_namespaces_want_the_bundle(labels: dict[str, str], wanted: bool) -> None:
    assert trust.wants_trust({"metadata": {"labels": labels}}) is wanted


def test_only_our_configmap_is_ours() -> None:
    ours = trust.configmap("shop", "PEM")
    assert trust.is_ours(ours)
    assert ours["data"] == {"ca.crt": "PEM"}
    assert not trust.is_ours({"metadata": {"name": "acmebridge-trust", "labels": {}}})


# --- serving certificate ------------------------------------------------------------------------


def fresh(now: datetime = NOW, lifetime: timedelta = 90 * DAY) -> ServingMaterial:
    return webhook_tls.issue(None, Plan.NEW_CA, now=now, hosts=HOSTS, lifetime=lifetime)


def verify(material: ServingMaterial, host: str, now: datetime) -> None:
    store = verification.Store(list(material.cas))
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .time(now)
        .build_server_verifier(x509.DNSName(host))
    )
    verifier.verify(material.cert, [])


def test_a_new_serving_certificate_verifies_against_the_ca_bundle_for_each_host() -> None:
    material = fresh()
    for host in HOSTS:
        verify(material, host, NOW)
    assert webhook_tls.decide(material, now=NOW, hosts=HOSTS) is Plan.KEEP
    round_trip = ServingMaterial.from_data(material.to_data())
    assert round_trip is not None and round_trip.cert == material.cert


@pytest.mark.parametrize(
    ("later", "hosts", "plan"),
    [
        pytest.param(59 * DAY, HOSTS, Plan.KEEP, id="kept before two thirds of its lifetime"),
        pytest.param(61 * DAY, HOSTS, Plan.NEW_LEAF, id="renewed after two thirds"),
        pytest.param(DAY, ("other.pki.svc",), Plan.NEW_LEAF, id="renewed for new host names"),
        pytest.param(601 * DAY, HOSTS, Plan.NEW_CA, id="the CA renewed at two thirds of its own"),
    ],
)
def test_decide(later: timedelta, hosts: tuple[str, ...], plan: Plan) -> None:
    assert webhook_tls.decide(fresh(), now=NOW + later, hosts=hosts) is plan


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="an empty Secret"),
        pytest.param({"ca.crt": b"x", "ca.key": b"y", "tls.crt": b"z", "tls.key": b"w"}, id="junk"),
    ],
)
def test_unreadable_material_starts_afresh(data: dict[str, bytes]) -> None:
    material = ServingMaterial.from_data(data)
    assert material is None
    assert webhook_tls.decide(material, now=NOW, hosts=HOSTS) is Plan.NEW_CA


def test_a_renewed_leaf_keeps_the_ca_so_the_bundle_does_not_change() -> None:
    first = fresh()
    later = NOW + 61 * DAY
    second = webhook_tls.issue(first, Plan.NEW_LEAF, now=later, hosts=HOSTS, lifetime=90 * DAY)
    assert second.cert != first.cert
    assert webhook_tls.ca_bundle(second, now=later) == webhook_tls.ca_bundle(first, now=later)
    verify(second, HOSTS[0], later)


def test_a_new_ca_keeps_the_old_one_in_the_bundle_until_it_expires() -> None:
    first = fresh()
    later = NOW + 601 * DAY
    second = webhook_tls.issue(first, Plan.NEW_CA, now=later, hosts=HOSTS, lifetime=90 * DAY)
    assert second.cas[1:] == first.cas
    bundle = x509.load_pem_x509_certificates(webhook_tls.ca_bundle(second, now=later))
    assert bundle == list(second.cas)
    # A replica still serving a certificate of the old CA is trusted by the same bundle.
    old = webhook_tls.issue(first, Plan.NEW_LEAF, now=later, hosts=HOSTS, lifetime=90 * DAY)
    verify(ServingMaterial(second.cas, old.ca_key, old.cert, old.key), HOSTS[0], later)
    after_old = first.cas[0].not_valid_after_utc + DAY
    assert x509.load_pem_x509_certificates(webhook_tls.ca_bundle(second, now=after_old)) == [
        second.cas[0]
    ]


def test_a_leaf_never_outlives_its_ca() -> None:
    material = webhook_tls.issue(
        fresh(lifetime=DAY), Plan.NEW_LEAF, now=NOW + 9 * DAY, hosts=HOSTS, lifetime=DAY * 5
    )
    assert material.cert.not_valid_after_utc <= material.cas[0].not_valid_after_utc


def test_the_next_look_is_at_the_earlier_renewal_and_never_later_than_asked() -> None:
    material = fresh(lifetime=timedelta(minutes=3))
    wait = webhook_tls.next_check(material, now=NOW, most=timedelta(hours=1))
    assert timedelta(minutes=1) < wait <= timedelta(minutes=2, seconds=5)
    assert webhook_tls.next_check(fresh(), now=NOW, most=timedelta(minutes=10)) == timedelta(
        minutes=10
    )


def test_serving_hosts() -> None:
    assert (
        webhook_tls.serving_hosts(
            service=("pki", "acmebridge-webhook"), url_host=None, cluster_domain="cluster.local"
        )
        == HOSTS
    )
    assert webhook_tls.serving_hosts(service=None, url_host="127.0.0.1", cluster_domain="x") == (
        "127.0.0.1",
    )


# --- webhook configuration ----------------------------------------------------------------------

SERVICE = webhook_config.ClientConfig(service_namespace="pki", service_name="acmebridge-webhook")


def test_pods_fail_closed_and_workloads_fail_open_and_only_opted_in_objects_are_sent() -> None:
    body = webhook_config.configuration(
        "acmebridge", SERVICE, namespaces=(), excluded=("kube-system", "pki"), ca_bundle=b"CA"
    )
    pods, workloads = body["webhooks"]
    assert (pods["failurePolicy"], workloads["failurePolicy"]) == ("Fail", "Ignore")
    assert pods["rules"][0]["resources"] == ["pods"] and pods["rules"][0]["operations"] == [
        "CREATE"
    ]
    assert workloads["rules"][0]["resources"] == ["deployments", "statefulsets", "daemonsets"]
    assert (
        "'acmebridge.io/inject' in object.metadata.annotations"
        in (pods["matchConditions"][0]["expression"])
    )
    assert (
        "object.spec.template.metadata.annotations" in workloads["matchConditions"][0]["expression"]
    )
    assert pods["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "pki"],
            }
        ]
    }
    assert pods["clientConfig"] == {
        "service": {
            "namespace": "pki",
            "name": "acmebridge-webhook",
            "path": "/mtls-pods",
            "port": 443,
        },
        "caBundle": base64.b64encode(b"CA").decode(),
    }
    assert pods["sideEffects"] == "None" and pods["timeoutSeconds"] <= 30


def test_a_namespaced_operator_sees_only_its_namespaces() -> None:
    selector = webhook_config.namespace_selector(namespaces=("shop", "pki"), excluded=("pki",))
    assert selector["matchExpressions"][0] == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["shop"],
    }


def test_a_url_client_config_for_an_operator_outside_the_cluster() -> None:
    client = webhook_config.ClientConfig(url="https://127.0.0.1:9443/")
    assert client.at("mtls-pods", b"") == {"url": "https://127.0.0.1:9443/mtls-pods"}


def test_the_ca_bundle_patch_touches_only_our_webhooks() -> None:
    body = webhook_config.configuration(
        "acmebridge", SERVICE, namespaces=(), excluded=(), ca_bundle=b"OLD"
    )
    body["webhooks"].append({"name": "someone.else", "clientConfig": {"caBundle": "xyz"}})
    hooks = webhook_config.ca_bundle_patch(body, b"NEW")
    assert hooks is not None
    new = base64.b64encode(b"NEW").decode()
    assert [h["clientConfig"].get("caBundle") for h in hooks] == [new, new, "xyz"]
    body["webhooks"] = hooks
    assert webhook_config.ca_bundle_patch(body, b"NEW") is None
