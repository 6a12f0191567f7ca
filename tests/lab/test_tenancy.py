"""Tenant boundaries in the lab: the user roles, Secrets that stay in their namespace, and the
allow-list of ACME servers for namespaced Issuers.

The operator holds more privilege than the teams that use it (it reads and writes Secrets in
every namespace it serves). These tests check that a team gets no more through it than its own
namespace gives: users manage Certificates and Issuers but never their status (the operator's
record), an Issuer finds its Secrets only in its own namespace, a ClusterIssuer's Secrets stay in
the cluster-resource namespace, and a namespaced Issuer cannot point the operator at a server
outside the allow-list.

The user roles are the Helm chart's own (helm/acmebridge, templates/rbac-users.yaml), rendered
with the lab's pinned helm under a name of this test's own and applied to the lab's API server,
whose RBAC and ClusterRole aggregation are the real ones. Users are impersonated by the admin.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from acmebridge.adapters.acme_client import generate_account_key
from acmebridge.adapters.kube import Kube, KubeError, core_path, group_path, ours_path
from tests.chart.chart import helm_binary, render
from tests.lab.conftest import acme_spec, make_certificate, make_issuer
from tests.lab.operator_proc import CLUSTER_RESOURCE_NAMESPACE, OperatorProcess
from tests.lab.waits import condition, get_object, wait_for, wait_for_condition

pytestmark = pytest.mark.lab

GROUP, VERSION = "acmebridge.io", "v1alpha1"
RBAC = ("rbac.authorization.k8s.io", "v1")
TIMEOUT = 60


def as_user(lab: Any, user: str) -> Kube:
    """The admin's connection, impersonating ``user`` (who is in no group but authenticated)."""
    api = config.new_client_from_config(lab.env["KUBECONFIG"])
    api.set_default_header("Impersonate-User", user)
    return Kube(api)


def status_code(call: Callable[[], Any]) -> int:
    """The HTTP status of a call: 200 when it succeeds, else the API server's refusal."""
    try:
        call()
    except KubeError as e:
        return e.status
    return 200


def ready(
    k: Kube, plural: str, namespace: str | None, name: str, status: str = "True"
) -> dict[str, Any]:
    return wait_for_condition(
        k.api, GROUP, VERSION, plural, namespace, name, "Ready", status, timeout=TIMEOUT
    )


def ready_reason(
    k: Kube, plural: str, namespace: str | None, name: str, reason: str, hint: str = ""
) -> dict[str, Any]:
    """Waits for Ready=False with ``reason`` and a message containing ``hint``."""

    def met() -> dict[str, Any] | None:
        body = get_object(k.api, GROUP, VERSION, plural, namespace, name)
        c = condition(body, "Ready")
        if c and c.get("status") == "False" and c.get("reason") == reason:
            return body if hint in c.get("message", "") else None
        return None

    return wait_for(
        met,
        timeout=TIMEOUT,
        describe=lambda: (
            f"Ready=False {reason} on {plural}/{name}; Ready is "
            f"{condition(get_object(k.api, GROUP, VERSION, plural, namespace, name), 'Ready')}"
        ),
    )


def key_secret(name: str, pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"tls.key": base64.b64encode(pem).decode()},
    }


def _binding(namespace: str, user: str, role: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{user}-{role}"[:63], "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


# --- the user roles --------------------------------------------------------------------------


class UserRoles:
    """The chart's user ClusterRoles, rendered under a name unique to one test."""

    def __init__(self, k: Kube, prefix: str) -> None:
        helm = helm_binary()
        assert helm is not None, "helm is not built: `make lab-bin` builds it into .lab/bin"
        self.k = k
        self.view, self.edit = f"{prefix}-view", f"{prefix}-edit"
        self.roles = [
            d
            for d in render(helm, {"fullnameOverride": prefix})
            if d["kind"] == "ClusterRole" and d["metadata"]["name"] in (self.view, self.edit)
        ]
        assert len(self.roles) == 2, "the chart renders a view and an edit role for users"
        self.path = group_path(*RBAC, "clusterroles", None)

    def apply(self) -> None:
        for role in self.roles:
            self.k.create(self.path, role)

    def remove(self) -> None:
        for role in self.roles:
            with contextlib.suppress(KubeError):
                self.k.delete(f"{self.path}/{role['metadata']['name']}")


@pytest.fixture
def chart_roles(k: Kube, namespace: str) -> Iterator[UserRoles]:
    """The chart's user roles, not yet applied; removed after the test."""
    roles = UserRoles(k, f"tenancy-{hashlib.sha256(namespace.encode()).hexdigest()[:8]}")
    try:
        yield roles
    finally:
        roles.remove()


@pytest.fixture
def user_roles(chart_roles: UserRoles) -> dict[str, str]:
    """The chart's user roles, applied."""
    chart_roles.apply()
    return {"view": chart_roles.view, "edit": chart_roles.edit}


def _certificate(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "issuerRef": {"name": "internal"},
            "dnsNames": [f"{name}.tenancy.lab.test"],
        },
    }


def _issuer(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Issuer",
        "metadata": {"name": name},
        "spec": {
            "acme": {
                "server": "https://ca.internal.example/acme/directory",
                "privateKeySecretRef": {"name": f"{name}-account"},
            }
        },
    }


def _what_a_user_may_do(user: Kube, namespace: str, suffix: str) -> dict[str, int]:
    """Tries each thing a team does, and what it must not, and returns the HTTP statuses."""
    certs, issuers = ours_path("certificates", namespace), ours_path("issuers", namespace)
    name = f"by-{suffix}"
    done = {
        "list certificates": status_code(lambda: user.list(certs)),
        "create a Certificate": status_code(lambda: user.create(certs, _certificate(name))),
        "create an Issuer": status_code(lambda: user.create(issuers, _issuer(name))),
        "change a Certificate's spec": status_code(
            lambda: user.merge_patch(f"{certs}/{name}", {"spec": {"dnsNames": ["b.lab.test"]}})
        ),
    }
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Forged"}]}}
    done["write a Certificate's status"] = status_code(
        lambda: user.merge_patch(f"{certs}/{name}/status", status)
    )
    done["write an Issuer's status"] = status_code(
        lambda: user.merge_patch(f"{issuers}/{name}/status", status)
    )
    done["create a ClusterIssuer"] = status_code(
        lambda: user.create(
            ours_path("clusterissuers", None),
            {**_issuer(f"{name}-{namespace}"), "kind": "ClusterIssuer"},
        )
    )
    return done


def test_the_edit_role_manages_certificates_and_issuers_but_never_their_status(
    lab: Any, k: Kube, namespace: str, user_roles: dict[str, str]
) -> None:
    k.create(
        group_path(*RBAC, "rolebindings", namespace),
        _binding(namespace, "alice", user_roles["edit"]),
    )
    alice = as_user(lab, "alice")
    # RBAC changes take effect within a moment: wait for the first allowed call.
    wait_for(
        lambda: status_code(lambda: alice.list(ours_path("certificates", namespace))) == 200,
        timeout=30,
        describe="alice's RoleBinding to take effect",
    )
    done = _what_a_user_may_do(alice, namespace, "alice")
    assert done == {
        "list certificates": 200,
        "create a Certificate": 200,
        "create an Issuer": 200,
        "change a Certificate's spec": 200,
        "write a Certificate's status": 403,
        "write an Issuer's status": 403,
        "create a ClusterIssuer": 403,
    }
    cert = get_object(k.api, GROUP, VERSION, "certificates", namespace, "by-alice")
    assert cert is not None and condition(cert, "Ready") is None, "the forged status stuck"


def test_the_view_role_reads_but_never_writes(
    lab: Any, k: Kube, namespace: str, user_roles: dict[str, str]
) -> None:
    k.create(
        group_path(*RBAC, "rolebindings", namespace), _binding(namespace, "bob", user_roles["view"])
    )
    bob = as_user(lab, "bob")
    wait_for(
        lambda: status_code(lambda: bob.list(ours_path("certificates", namespace))) == 200,
        timeout=30,
        describe="bob's RoleBinding to take effect",
    )
    done = _what_a_user_may_do(bob, namespace, "bob")
    assert done["list certificates"] == 200
    assert {k: v for k, v in done.items() if k != "list certificates"} == dict.fromkeys(
        [
            "create a Certificate",
            "create an Issuer",
            "change a Certificate's spec",
            "write a Certificate's status",
            "write an Issuer's status",
            "create a ClusterIssuer",
        ],
        403,
    )


def test_the_roles_aggregate_into_the_built_in_edit_role(
    lab: Any, k: Kube, namespace: str, chart_roles: UserRoles
) -> None:
    """Whoever has `edit` in a namespace (the usual team role) gets the same, and no status."""
    k.create(group_path(*RBAC, "rolebindings", namespace), _binding(namespace, "carol", "edit"))
    carol = as_user(lab, "carol")
    certs = ours_path("certificates", namespace)
    # Before the chart's roles exist, `edit` says nothing about Certificates.
    wait_for(
        lambda: status_code(lambda: carol.list(core_path("configmaps", namespace))) == 200,
        timeout=30,
        describe="carol's RoleBinding to take effect",
    )
    assert status_code(lambda: carol.create(certs, _certificate("by-carol"))) == 403, (
        "the lab's edit ClusterRole already grants Certificates: another ClusterRole labelled "
        "aggregate-to-edit for acmebridge.io is installed, so this test cannot tell ours apart"
    )
    chart_roles.apply()
    wait_for(
        lambda: status_code(lambda: carol.create(certs, _certificate("by-carol"))) == 200,
        timeout=30,
        describe="the chart's rules to be aggregated into the built-in edit ClusterRole",
    )
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Forged"}]}}
    assert status_code(lambda: carol.merge_patch(f"{certs}/by-carol/status", status)) == 403


# --- Secrets stay in their namespace ---------------------------------------------------------


def test_an_issuer_cannot_reach_a_secret_in_another_namespace(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    request: pytest.FixtureRequest,
) -> None:
    other = f"{namespace[:50]}-other"
    k.create(core_path("namespaces", None), {"metadata": {"name": other}})
    request.addfinalizer(lambda: k.delete(core_path("namespaces", None, other)))
    their_key = k.create(
        core_path("secrets", other), key_secret("shared-key", generate_account_key())
    )
    operator_factory(namespace, other)

    # privateKeySecretRef has no namespace field: strict validation (kubectl's) refuses one...
    spec = acme_spec(lab, privateKeySecretRef={"name": "shared-key", "namespace": other})
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Issuer",
        "metadata": {"name": "reach"},
        "spec": {"acme": spec},
    }
    objects = client.CustomObjectsApi(k.api)
    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "issuers", manifest, field_validation="Strict"
        )
    message = json.loads(refused.value.body)["message"]
    assert 'unknown field "spec.acme.privateKeySecretRef.namespace"' in message
    # ...and any other client has it dropped before it is stored.
    stored = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "issuers", manifest, field_validation="Ignore"
    )
    assert stored["spec"]["acme"]["privateKeySecretRef"] == {"name": "shared-key", "key": "tls.key"}

    issuer = ready(k, "issuers", namespace, "reach")
    ours = k.get(core_path("secrets", namespace, "shared-key"))
    assert ours is not None, "the account key is generated in the Issuer's own namespace"
    assert ours["data"]["tls.key"] != their_key["data"]["tls.key"]
    theirs = k.get(core_path("secrets", other, "shared-key"))
    assert theirs is not None
    assert theirs["metadata"]["resourceVersion"] == their_key["metadata"]["resourceVersion"]

    # An issuerRef names an Issuer of the Certificate's own namespace, never another's.
    make_certificate(k, other, "web", issuerRef={"name": "reach"}, dnsNames=["reach.lab.test"])
    cert = ready_reason(k, "certificates", other, "web", "IssuerNotFound")
    assert f"in namespace '{other}'" in condition(cert, "Ready")["message"]  # type: ignore[index]
    assert issuer["status"]["acme"]["uri"]


def test_a_cluster_issuers_secrets_stay_in_the_cluster_resource_namespace(
    lab: Any,
    k: Kube,
    namespace: str,
    operator: OperatorProcess,
    request: pytest.FixtureRequest,
) -> None:
    name = f"tenancy-{hashlib.sha256(namespace.encode()).hexdigest()[:8]}"
    eab_name = f"{name}-eab"
    hmac = base64.urlsafe_b64encode(b"\x07" * 32).rstrip(b"=")
    k.create(
        core_path("secrets", CLUSTER_RESOURCE_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": eab_name},
            "type": "Opaque",
            "data": {"secret": base64.b64encode(hmac).decode()},
        },
    )
    request.addfinalizer(
        lambda: k.delete(core_path("secrets", CLUSTER_RESOURCE_NAMESPACE, eab_name))
    )
    # Finalizers run last-in first-out: the ClusterIssuer goes before its account key Secret,
    # so that no operator recreates the Secret for a ClusterIssuer that still exists.
    request.addfinalizer(lambda: k.delete(core_path("secrets", CLUSTER_RESOURCE_NAMESPACE, name)))
    make_issuer(k, None, name, acme_spec(lab, privateKeySecretRef={"name": name}))
    request.addfinalizer(lambda: k.delete(ours_path("clusterissuers", None, name)))
    cluster = ready(k, "clusterissuers", None, name)
    cluster_key = k.get(core_path("secrets", CLUSTER_RESOURCE_NAMESPACE, name))
    assert cluster_key is not None

    # A namespaced Issuer naming the same Secrets finds its own namespace's, or none.
    make_issuer(k, namespace, "same-names", acme_spec(lab, privateKeySecretRef={"name": name}))
    namespaced = ready(k, "issuers", namespace, "same-names")
    own = k.get(core_path("secrets", namespace, name))
    assert own is not None and own["data"]["tls.key"] != cluster_key["data"]["tls.key"]
    assert namespaced["status"]["acme"]["uri"] != cluster["status"]["acme"]["uri"]
    eab = {"keyID": "kid-1", "keySecretRef": {"name": eab_name, "key": "secret"}}
    make_issuer(
        k,
        namespace,
        "same-eab",
        acme_spec(lab, privateKeySecretRef={"name": "x"}, externalAccountBinding=eab),
    )
    missing = ready_reason(k, "issuers", namespace, "same-eab", "EABSecretMissing")
    assert f"'{namespace}/{eab_name}' does not exist" in condition(missing, "Ready")["message"]  # type: ignore[index]

    # A Certificate whose secretName is the ClusterIssuer's Secret writes in its own namespace:
    # there it meets the namespaced Issuer's account key, which it may not take either.
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": name, "kind": "ClusterIssuer"},
        secretName=name,
        dnsNames=["tenancy.lab.test"],
    )
    ready_reason(
        k, "certificates", namespace, "web", "SecretConflict", "holds the ACME account key"
    )
    after = k.get(core_path("secrets", CLUSTER_RESOURCE_NAMESPACE, name))
    assert after is not None
    assert after["metadata"]["resourceVersion"] == cluster_key["metadata"]["resourceVersion"]


# --- the allow-list --------------------------------------------------------------------------


def test_an_acme_server_outside_the_allow_list_is_refused(
    lab: Any, k: Kube, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    op = operator_factory(namespace, extra=["--allowed-acme-server", "https://127.0.0.1:9/"])
    make_issuer(
        k, namespace, "pebble", acme_spec(lab, privateKeySecretRef={"name": "pebble-account"})
    )
    listed_spec = acme_spec(
        lab, server="https://127.0.0.1:9/dir", privateKeySecretRef={"name": "listed-account"}
    )
    make_issuer(k, namespace, "listed", listed_spec)
    make_certificate(k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["a.lab.test"])

    refused = ready_reason(k, "issuers", namespace, "pebble", "ServerNotAllowed")
    message = condition(refused, "Ready")["message"]  # type: ignore[index]
    assert lab.env["PEBBLE_DIRECTORY_URL"] in message and "allow-list" in message
    # The Event follows the condition by a moment.
    wait_for(
        lambda: any(
            e["reason"] == "ServerNotAllowed" and e["involvedObject"]["name"] == "pebble"
            for e in k.list(core_path("events", namespace))
        ),
        timeout=10,
        describe=lambda: (
            "a ServerNotAllowed Event on Issuer pebble; Events: "
            + str(
                [
                    (e["reason"], e["involvedObject"]["name"])
                    for e in k.list(core_path("events", namespace))
                ]
            )
        ),
    )
    # The Certificate may first see its Issuer "not ready yet"; it must then learn why.
    ready_reason(k, "certificates", namespace, "web", "IssuerNotReady", "ServerNotAllowed")
    # Refused before anything was done for it: no account key was generated.
    assert k.get(core_path("secrets", namespace, "pebble-account")) is None

    # The listed server is let through (and then found unreachable: port 9 is discard).
    listed = ready_reason(k, "issuers", namespace, "listed", "ACMEServerUnavailable")
    assert "127.0.0.1:9" in condition(listed, "Ready")["message"]  # type: ignore[index]
    # Pebble was never asked anything: the only ACME requests made (to port 9) all failed.
    answered = [
        line
        for line in op.metrics().splitlines()
        if line.startswith("acmebridge_acme_client_requests_total{")
        and 'outcome="ok"' in line
        and not line.endswith(" 0.0")
    ]
    assert not answered, answered
