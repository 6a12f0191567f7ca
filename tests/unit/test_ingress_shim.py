"""The Ingress shim's decisions: which Certificates an annotated Ingress asks for, what a bad
annotation says, and what is created, updated, deleted or left alone; and the watch bookkeeping
that decides which Ingress to look at again."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acmebridge.adapters.kube import Kube
from acmebridge.config import OperatorConfig
from acmebridge.domain.ingress_annotations import OPTIONS
from acmebridge.domain.ingress_shim import (
    BAD_CONFIG,
    CONFLICT,
    IGNORED,
    INGRESS_LABEL,
    OTHER_ISSUER,
    Plan,
    changes,
    is_shim_certificate,
    plan,
)
from acmebridge.domain.secret import label_value
from acmebridge.domain.solvers import SOLVER_LABEL
from acmebridge.domain.spec import CertificateSpec, IssuerRef
from acmebridge.reconcile.ingresses import IngressShim
from acmebridge.reconcile.runtime import ObjectKey, Runtime

UID = "0b5c6a43-1111-4c9e-9d3e-6f8f5d0c0a01"
OTHER_UID = "7d1f2e3c-2222-4b8a-8f00-1234567890ab"


def ingress(
    annotations: dict[str, str] | None = None,
    tls: list[Any] | None = None,
    *,
    name: str = "web",
    uid: str = UID,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": "10",
            "labels": labels or {},
            "annotations": {"acmebridge.io/issuer": "internal-ca"}
            if annotations is None
            else annotations,
        },
        "spec": {
            "tls": [{"hosts": ["web.shop.example"], "secretName": "web-tls"}]
            if tls is None
            else tls
        },
    }


def spec_of(p: Plan, name: str = "web-tls") -> dict[str, Any]:
    (desired,) = [d for d in p.certificates if d.name == name]
    return dict(desired.manifest["spec"])


def reasons(p: Plan) -> list[str]:
    return [problem.reason for problem in p.problems]


# --- What an Ingress asks for ----------------------------------------------------------------


def test_one_certificate_per_tls_secret_owned_and_labelled_by_the_ingress() -> None:
    p = plan(
        ingress(
            tls=[
                {"hosts": ["Web.Shop.Example.", "www.shop.example"], "secretName": "web-tls"},
                {"hosts": ["api.shop.example", "10.0.0.7"], "secretName": "api-tls"},
            ],
            labels={"app": "web", "acmebridge.io/other": "x"},
        )
    )
    assert p.wanted and not p.hold and not p.problems
    assert [d.name for d in p.certificates] == ["web-tls", "api-tls"]
    web = p.certificates[0].manifest
    assert web["metadata"]["name"] == "web-tls" and web["metadata"]["namespace"] == "shop"
    assert web["metadata"]["labels"] == {"app": "web", INGRESS_LABEL: "web"}
    assert web["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "name": "web",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert web["spec"] == {
        "secretName": "web-tls",
        "issuerRef": {"name": "internal-ca"},
        "dnsNames": ["web.shop.example", "www.shop.example"],
    }
    assert spec_of(p, "api-tls")["dnsNames"] == ["api.shop.example"]
    assert spec_of(p, "api-tls")["ipAddresses"] == ["10.0.0.7"]
    assert is_shim_certificate(web, UID) and not is_shim_certificate(web, OTHER_UID)


@pytest.mark.parametrize(
    ("annotations", "issuer"),
    [
        pytest.param(
            {"acmebridge.io/issuer": "ca"}, IssuerRef("ca", "Issuer"), id="issuer names an Issuer"
        ),
        pytest.param(
            {"acmebridge.io/cluster-issuer": "ca"},
            IssuerRef("ca", "ClusterIssuer"),
            id="cluster-issuer names a ClusterIssuer",
        ),
        pytest.param(
            {"acmebridge.io/issuer": "ca", "acmebridge.io/issuer-kind": "ClusterIssuer"},
            IssuerRef("ca", "ClusterIssuer"),
            id="issuer-kind turns issuer into a ClusterIssuer",
        ),
        pytest.param(
            {"cert-manager.io/issuer": "ca"},
            IssuerRef("ca", "Issuer"),
            id="cert-manager's issuer annotation is an alias",
        ),
        pytest.param(
            {"cert-manager.io/cluster-issuer": "ca"},
            IssuerRef("ca", "ClusterIssuer"),
            id="cert-manager's cluster-issuer annotation is an alias",
        ),
        pytest.param(
            {"cert-manager.io/issuer": "ca", "cert-manager.io/issuer-kind": "ClusterIssuer"},
            IssuerRef("ca", "ClusterIssuer"),
            id="cert-manager's issuer-kind is an alias",
        ),
        pytest.param(
            {"cert-manager.io/issuer": "ca", "cert-manager.io/issuer-group": "cert-manager.io"},
            IssuerRef("ca", "Issuer"),
            id="issuer-group cert-manager.io means acmebridge's own issuers after a migration",
        ),
        pytest.param(
            {"acmebridge.io/issuer": "new", "cert-manager.io/cluster-issuer": "old"},
            IssuerRef("new", "Issuer"),
            id="an acmebridge.io issuer annotation wins over cert-manager.io",
        ),
        pytest.param(
            {
                "acmebridge.io/issuer": "new",
                "cert-manager.io/issuer": "old",
                "cert-manager.io/issuer-group": "awspca.cert-manager.io",
            },
            IssuerRef("new", "Issuer"),
            id="cert-manager.io/issuer-group does not matter on an acmebridge.io Ingress",
        ),
    ],
)
def test_the_issuer_annotations(annotations: dict[str, str], issuer: IssuerRef) -> None:
    p = plan(ingress(annotations))
    assert p.wanted and not p.problems, p.problems
    assert p.issuer == issuer
    expected = {"name": issuer.name} | ({"kind": issuer.kind} if issuer.kind != "Issuer" else {})
    assert spec_of(p)["issuerRef"] == expected


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({}, id="no annotation asks for nothing"),
        pytest.param(
            {"acmebridge.io/duration": "2160h", "kubernetes.io/tls-acme": "true"},
            id="options without an issuer ask for nothing",
        ),
    ],
)
def test_ingresses_that_ask_for_nothing(annotations: dict[str, str]) -> None:
    assert plan(ingress(annotations)) == Plan(wanted=False)


def test_an_issuer_of_another_api_group_is_not_acmebridges() -> None:
    p = plan(
        ingress(
            {
                "cert-manager.io/issuer": "pca",
                "cert-manager.io/issuer-kind": "AWSPCAIssuer",
                "cert-manager.io/issuer-group": "awspca.cert-manager.io",
            }
        )
    )
    assert not p.wanted and not p.certificates
    (problem,) = p.problems
    assert (problem.reason, problem.type) == (OTHER_ISSUER, "Normal")
    assert "awspca.cert-manager.io" in problem.message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        pytest.param(
            "common-name",
            "WWW.shop.example",
            {
                "commonName": "www.shop.example",
                "dnsNames": ["web.shop.example", "www.shop.example"],
            },
            id="common-name sets commonName and joins the names",
        ),
        pytest.param("duration", "2160h", {"duration": "2160h"}, id="duration"),
        pytest.param("renew-before", "720h", {"renewBefore": "720h"}, id="renew-before"),
        pytest.param(
            "renew-before-percentage",
            "25",
            {"renewBeforePercentage": 25},
            id="renew-before-percentage",
        ),
        pytest.param(
            "usages",
            "digital signature, server auth",
            {"usages": ["digital signature", "server auth"]},
            id="usages are comma-separated",
        ),
        pytest.param(
            "private-key-algorithm",
            "Ed25519",
            {"privateKey": {"algorithm": "Ed25519"}},
            id="private-key-algorithm",
        ),
        pytest.param(
            "private-key-encoding", "PKCS8", {"privateKey": {"encoding": "PKCS8"}}, id="encoding"
        ),
        pytest.param("private-key-size", "384", {"privateKey": {"size": 384}}, id="key size"),
        pytest.param(
            "private-key-rotation-policy",
            "Never",
            {"privateKey": {"rotationPolicy": "Never"}},
            id="rotation policy",
        ),
        pytest.param(
            "email-sans",
            "ops@shop.example,pki@shop.example",
            {"emailAddresses": ["ops@shop.example", "pki@shop.example"]},
            id="email-sans",
        ),
        pytest.param(
            "ip-sans",
            "10.0.0.1, 2001:0db8::0001",
            {"ipAddresses": ["10.0.0.1", "2001:db8::1"]},
            id="ip-sans are added as canonical addresses",
        ),
        pytest.param(
            "uri-sans",
            "spiffe://cluster.local/ns/shop/sa/web",
            {"uris": ["spiffe://cluster.local/ns/shop/sa/web"]},
            id="uri-sans",
        ),
        pytest.param(
            "subject-organizations",
            '"Example, Inc.",Example Ltd',
            {"subject": {"organizations": ["Example, Inc.", "Example Ltd"]}},
            id="subject lists are one line of CSV, as in cert-manager",
        ),
        pytest.param(
            "subject-serialnumber",
            "1234",
            {"subject": {"serialNumber": "1234"}},
            id="subject-serialnumber",
        ),
        pytest.param(
            "secret-template",
            '{"labels": {"team": "shop"}, "annotations": {"a.example/b": "c"}}',
            {"secretTemplate": {"labels": {"team": "shop"}, "annotations": {"a.example/b": "c"}}},
            id="secret-template is JSON",
        ),
    ],
)
@pytest.mark.parametrize("prefix", ["acmebridge.io/", "cert-manager.io/"])
def test_options_map_onto_the_certificate_spec(
    prefix: str, option: str, value: str, expected: dict[str, Any]
) -> None:
    p = plan(ingress({f"{prefix}issuer": "internal-ca", f"{prefix}{option}": value}))
    assert not p.problems, p.problems
    spec = spec_of(p)
    for field, wanted in expected.items():
        assert spec[field] == wanted


def test_a_size_is_ignored_for_ed25519_as_in_cert_manager() -> None:
    p = plan(
        ingress(
            {
                "acmebridge.io/issuer": "ca",
                "acmebridge.io/private-key-algorithm": "Ed25519",
                "acmebridge.io/private-key-size": "2048",
            }
        )
    )
    assert not p.problems
    assert spec_of(p)["privateKey"] == {"algorithm": "Ed25519"}


def test_revision_history_limit_has_no_counterpart_and_is_ignored() -> None:
    p = plan(
        ingress({"cert-manager.io/issuer": "ca", "cert-manager.io/revision-history-limit": "x"})
    )
    assert not p.problems and p.certificates


def test_a_cert_manager_option_on_an_acmebridge_ingress_is_reported_not_lost_silently() -> None:
    p = plan(
        ingress(
            {
                "acmebridge.io/issuer": "ca",
                "acmebridge.io/duration": "720h",
                "cert-manager.io/duration": "2160h",  # has its acmebridge.io counterpart
                "cert-manager.io/renew-before": "24h",  # has none
            }
        )
    )
    assert spec_of(p)["duration"] == "720h" and "renewBefore" not in spec_of(p)
    (problem,) = p.problems
    assert problem.reason == IGNORED
    assert problem.message.startswith("cert-manager.io/renew-before is ignored")
    assert "write acmebridge.io/renew-before" in problem.message


@pytest.mark.parametrize(
    ("annotations", "names", "hint"),
    [
        pytest.param(
            {"acmebridge.io/duration": "90d"},
            "acmebridge.io/duration",
            "90d is 2160h",
            id="a duration in days says how to write hours",
        ),
        pytest.param(
            {"acmebridge.io/duration": "1m"},
            "acmebridge.io/duration",
            "at least 5m",
            id="a duration under five minutes",
        ),
        pytest.param(
            {"acmebridge.io/duration": "24h", "acmebridge.io/renew-before": "48h"},
            "acmebridge.io/renew-before",
            "shorter than duration",
            id="renew-before longer than the duration",
        ),
        pytest.param(
            {"acmebridge.io/renew-before": "24h", "acmebridge.io/renew-before-percentage": "20"},
            "acmebridge.io/renew-before",
            "mutually exclusive",
            id="renew-before and renew-before-percentage together",
        ),
        pytest.param(
            {"acmebridge.io/renew-before-percentage": "150"},
            "acmebridge.io/renew-before-percentage",
            "between 1 and 99",
            id="a percentage above 99",
        ),
        pytest.param(
            {"acmebridge.io/private-key-algorithm": "DSA"},
            "acmebridge.io/private-key-algorithm",
            "RSA, ECDSA, Ed25519",
            id="an unknown key algorithm",
        ),
        pytest.param(
            {
                "acmebridge.io/private-key-algorithm": "RSA",
                "acmebridge.io/private-key-size": "8192",
            },
            "acmebridge.io/private-key-size",
            "2048, 3072, 4096",
            id="an RSA size acmebridge does not make",
        ),
        pytest.param(
            {"acmebridge.io/private-key-size": "big"},
            "acmebridge.io/private-key-size",
            "whole number",
            id="a size that is not a number",
        ),
        pytest.param(
            {"acmebridge.io/usages": "server auth,bogus"},
            "acmebridge.io/usages",
            "unknown usage 'bogus'",
            id="an unknown usage",
        ),
        pytest.param(
            {"acmebridge.io/ip-sans": "10.0.0.1,not-an-ip"},
            "acmebridge.io/ip-sans",
            "not an IPv4 or IPv6 address",
            id="an address that is not one",
        ),
        pytest.param(
            {"acmebridge.io/common-name": "not a name"},
            "acmebridge.io/common-name",
            "labels may hold only",
            id="a common name that is no DNS name",
        ),
        pytest.param(
            {"acmebridge.io/subject-organizations": '"Example'},
            "acmebridge.io/subject-organizations",
            "comma-separated",
            id="broken CSV",
        ),
        pytest.param(
            {"acmebridge.io/secret-template": "{labels: 1}"},
            "acmebridge.io/secret-template",
            "is not JSON",
            id="a secret template that is not JSON",
        ),
        pytest.param(
            {"acmebridge.io/secret-template": '{"labels": {"acmebridge.io/x": "y"}}'},
            "acmebridge.io/secret-template",
            "set by the operator itself",
            id="a secret template with the operator's own prefix",
        ),
        pytest.param(
            {"acmebridge.io/cluster-issuer": "internal-ca"},
            "acmebridge.io/issuer",
            "keep one",
            id="both issuer and cluster-issuer",
        ),
        pytest.param(
            {"acmebridge.io/issuer-kind": "AWSPCAIssuer"},
            "acmebridge.io/issuer-kind",
            "write Issuer or ClusterIssuer",
            id="an issuer kind acmebridge does not have",
        ),
        pytest.param(
            {"acmebridge.io/issuer": ""},
            "acmebridge.io/issuer",
            "is empty: write the name of this namespace's Issuer",
            id="an empty issuer name",
        ),
        pytest.param(
            {"acmebridge.io/issuer": "Internal_CA"},
            "acmebridge.io/issuer",
            "not a valid object name",
            id="an issuer name Kubernetes cannot have",
        ),
    ],
)
def test_a_bad_annotation_names_itself_says_what_to_write_and_holds_every_change(
    annotations: dict[str, str], names: str, hint: str
) -> None:
    p = plan(ingress({"acmebridge.io/issuer": "internal-ca", **annotations}))
    assert p.hold and not p.certificates
    bad = [problem for problem in p.problems if problem.reason == BAD_CONFIG]
    assert bad, p.problems
    assert bad[0].message.startswith(names + ": "), bad[0].message
    assert hint in bad[0].message
    assert bad[0].message.endswith("no Certificate was changed")
    assert changes(p, ingress_uid=UID, existing={"web-tls": made(ingress())}) == changes(
        Plan(wanted=True, hold=True), ingress_uid=UID, existing={}
    )


def test_every_bad_annotation_is_reported_at_once() -> None:
    p = plan(
        ingress(
            {
                "cert-manager.io/issuer": "ca",
                "cert-manager.io/cluster-issuer": "ca",
                "cert-manager.io/duration": "1y",
                "cert-manager.io/usages": "nope",
            }
        )
    )
    keys = sorted(problem.message.partition(":")[0] for problem in p.problems)
    assert keys == ["cert-manager.io/duration", "cert-manager.io/issuer", "cert-manager.io/usages"]


@pytest.mark.parametrize(
    ("tls", "made", "kept", "hint"),
    [
        pytest.param(
            [{"hosts": [], "secretName": "a-tls"}, {"hosts": ["b.example"], "secretName": "b-tls"}],
            ["b-tls"],
            {"a-tls"},
            "spec.tls[0].hosts: is empty",
            id="an entry without hosts is skipped and its Certificate kept",
        ),
        pytest.param(
            [{"hosts": ["a.example"]}, {"hosts": ["b.example"], "secretName": "b-tls"}],
            ["b-tls"],
            set(),
            "spec.tls[0].secretName: is empty",
            id="an entry without a secretName is skipped",
        ),
        pytest.param(
            [{"hosts": ["bad_host.example"], "secretName": "a-tls"}],
            [],
            {"a-tls"},
            "spec.tls[0].hosts[0]",
            id="an entry with a bad host is skipped and its Certificate kept",
        ),
        pytest.param(
            [{"hosts": ["a.example"], "secretName": "Bad_Secret"}],
            [],
            set(),
            "not a valid object name",
            id="an entry with a bad secretName is skipped",
        ),
        pytest.param(
            [{"hosts": [f"h{i}.example" for i in range(101)], "secretName": "a-tls"}],
            [],
            {"a-tls"},
            "spec.tls[0].hosts: may hold at most 100 entries",
            id="an entry with too many hosts is skipped",
        ),
        pytest.param(
            [],
            [],
            set(),
            "spec.tls: is empty",
            id="an annotated Ingress without TLS entries is told so",
        ),
    ],
)
def test_bad_tls_entries_are_skipped_one_by_one(
    tls: list[Any], made: list[str], kept: set[str], hint: str
) -> None:
    p = plan(ingress(tls=tls))
    assert not p.hold
    assert [d.name for d in p.certificates] == made
    assert p.keep == kept
    (problem,) = p.problems
    assert problem.reason == BAD_CONFIG and hint in problem.message


def test_two_tls_entries_naming_one_secret_hold_everything() -> None:
    p = plan(
        ingress(
            tls=[
                {"hosts": ["a.example"], "secretName": "web-tls"},
                {"hosts": ["b.example"], "secretName": "web-tls"},
            ]
        )
    )
    assert p.hold and not p.certificates
    assert "also named by spec.tls[1]" in p.problems[0].message


def test_a_long_ingress_name_becomes_a_valid_label_value() -> None:
    name = "a" * 70 + "-" + "b" * 100
    p = plan(ingress(name=name))
    assert p.certificates[0].manifest["metadata"]["labels"][INGRESS_LABEL] == label_value(name)
    assert len(label_value(name)) <= 63


# --- What changes ----------------------------------------------------------------------------


def made(source: dict[str, Any], name: str = "web-tls", **spec_changes: Any) -> dict[str, Any]:
    """The Certificate as the API server returns it after the shim created it from ``source``."""
    (desired,) = [d for d in plan(source).certificates if d.name == name]
    body = copy.deepcopy(dict(desired.manifest))
    body["metadata"].update(uid=f"uid-{name}", resourceVersion="7", generation=1, managedFields=[])
    # What the CRD's defaults add: must not count as a difference.
    body["spec"].setdefault("privateKey", {}).update(
        algorithm="ECDSA", encoding="PKCS1", rotationPolicy="Always"
    )
    body["spec"].update(spec_changes)
    body["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    return body


def foreign(name: str = "web-tls", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "acmebridge.io/v1alpha1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": "shop", "uid": "user-made", **meta},
        "spec": {"secretName": name, "issuerRef": {"name": "x"}, "dnsNames": ["a.example"]},
    }


def test_creates_what_is_missing() -> None:
    p = plan(ingress())
    todo = changes(p, ingress_uid=UID, existing={})
    assert [d.name for d in todo.create] == ["web-tls"]
    assert not todo.update and not todo.delete and not todo.problems


def test_leaves_an_up_to_date_certificate_alone_whatever_the_defaults() -> None:
    todo = changes(plan(ingress()), ingress_uid=UID, existing={"web-tls": made(ingress())})
    assert todo == changes(Plan(wanted=True), ingress_uid=UID, existing={})


def test_a_new_host_updates_the_certificate_in_place() -> None:
    before = ingress()
    after = ingress(
        tls=[{"hosts": ["web.shop.example", "new.shop.example"], "secretName": "web-tls"}]
    )
    todo = changes(plan(after), ingress_uid=UID, existing={"web-tls": made(before)})
    ((_, body),) = todo.update
    assert body["spec"]["dnsNames"] == ["web.shop.example", "new.shop.example"]
    assert body["metadata"]["resourceVersion"] == "7", "the PUT is guarded by what was read"
    assert body["metadata"]["uid"] == "uid-web-tls"
    assert "managedFields" not in body["metadata"] and "status" not in body
    assert not todo.create and not todo.delete


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda b: b["spec"].update(dnsNames=["evil.example"]), id="names edited"),
        pytest.param(lambda b: b["spec"].update(duration="1h"), id="a field added by hand"),
        pytest.param(lambda b: b["metadata"]["labels"].pop("app"), id="a label removed"),
        pytest.param(lambda b: b["spec"].update(dnsNames="x"), id="a spec the parser refuses"),
    ],
)
def test_edits_to_a_shim_certificate_are_put_back(edit: Any) -> None:
    source = ingress(labels={"app": "web"})
    body = made(source)
    edit(body)
    todo = changes(plan(source), ingress_uid=UID, existing={"web-tls": body})
    ((_, fixed),) = todo.update
    assert fixed["spec"] == plan(source).certificates[0].manifest["spec"]
    assert fixed["metadata"]["labels"] == {"app": "web", INGRESS_LABEL: "web"}


def test_deletes_the_certificate_of_a_tls_entry_that_went() -> None:
    two = ingress(
        tls=[
            {"hosts": ["web.shop.example"], "secretName": "web-tls"},
            {"hosts": ["api.shop.example"], "secretName": "api-tls"},
        ]
    )
    existing = {"web-tls": made(two), "api-tls": made(two, "api-tls")}
    todo = changes(plan(ingress()), ingress_uid=UID, existing=existing)
    assert [b["metadata"]["name"] for b in todo.delete] == ["api-tls"]
    assert not todo.create and not todo.update


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(ingress(annotations={}), id="the issuer annotation removed"),
        pytest.param(ingress(tls=[]), id="every TLS entry removed"),
        pytest.param(
            ingress({"cert-manager.io/issuer": "x", "cert-manager.io/issuer-group": "other.io"}),
            id="the Ingress now meant for another controller's issuer",
        ),
    ],
)
def test_deletes_every_certificate_of_an_ingress_that_asks_for_none(source: Any) -> None:
    existing = {"web-tls": made(ingress())}
    todo = changes(plan(source), ingress_uid=UID, existing=existing)
    assert [b["metadata"]["name"] for b in todo.delete] == ["web-tls"]
    assert not todo.create and not todo.update


OTHERS = made(ingress(name="other", uid=OTHER_UID), "web-tls")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(foreign(), id="a user's Certificate"),
        pytest.param(
            foreign(labels={INGRESS_LABEL: "web"}), id="the label alone does not make it ours"
        ),
        pytest.param(
            foreign(ownerReferences=made(ingress())["metadata"]["ownerReferences"]),
            id="the owner alone does not make it ours",
        ),
        pytest.param(OTHERS, id="another Ingress's Certificate"),
    ],
)
def test_never_deletes_or_updates_a_certificate_the_shim_did_not_make_for_it(
    body: dict[str, Any],
) -> None:
    for source in (ingress(annotations={}), ingress(tls=[]), ingress()):
        todo = changes(plan(source), ingress_uid=UID, existing={"web-tls": body})
        assert not todo.delete and not todo.update and not todo.create


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        pytest.param(foreign(), "not made from an Ingress", id="a user's Certificate"),
        pytest.param(OTHERS, "belongs to Ingress 'other'", id="another Ingress's"),
    ],
)
def test_a_certificate_of_the_same_name_is_a_conflict_left_untouched(
    body: dict[str, Any], hint: str
) -> None:
    todo = changes(plan(ingress()), ingress_uid=UID, existing={"web-tls": body})
    assert not todo.create and not todo.update and not todo.delete
    (problem,) = todo.problems
    assert (problem.reason, problem.certificate) == (CONFLICT, "web-tls")
    assert hint in problem.message


def test_keeps_the_certificate_of_a_broken_tls_entry() -> None:
    broken = ingress(tls=[{"hosts": ["bad_host"], "secretName": "web-tls"}])
    todo = changes(plan(broken), ingress_uid=UID, existing={"web-tls": made(ingress())})
    assert not todo.delete and not todo.update


def test_a_certificate_being_deleted_is_left_to_finish() -> None:
    body = made(ingress())
    body["metadata"]["deletionTimestamp"] = "2026-06-01T12:00:00Z"
    after = ingress(tls=[{"hosts": ["new.shop.example"], "secretName": "web-tls"}])
    assert changes(plan(after), ingress_uid=UID, existing={"web-tls": body}) == changes(
        Plan(wanted=True), ingress_uid=UID, existing={}
    )
    assert not changes(plan(ingress({})), ingress_uid=UID, existing={"web-tls": body}).delete


# --- Watch bookkeeping -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.woken: list[ObjectKey] = []
        self.forgotten: list[ObjectKey] = []

    def wake(self, key: ObjectKey, delay: float) -> None:
        self.woken.append(key)

    def forget(self, key: ObjectKey) -> None:
        self.forgotten.append(key)


@pytest.fixture
def shim() -> tuple[IngressShim, Runtime, Recorder]:
    rt = Runtime(
        config=OperatorConfig(),
        kube=cast(Kube, None),  # the watch bookkeeping makes no API call
        executor=cast(ThreadPoolExecutor, None),
    )
    rec = Recorder()
    return IngressShim(rt, wake=rec.wake, forget=rec.forget), rt, rec


KEY: ObjectKey = ("ingresses", "shop", "web")
CERT: ObjectKey = ("certificates", "shop", "web-tls")


def test_an_annotated_ingress_is_cached_and_woken_once_per_version(shim: Any) -> None:
    s, rt, rec = shim
    s.observe({"type": "ADDED", "object": ingress()})
    s.observe({"type": "MODIFIED", "object": ingress()})  # the same resourceVersion again
    assert rec.woken == [KEY] and KEY in rt.cache


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(ingress(annotations={}), id="an Ingress that asks for nothing"),
        pytest.param(
            ingress(labels={SOLVER_LABEL: "http01"}), id="the operator's own solver Ingress"
        ),
    ],
)
def test_ingresses_that_are_not_the_shims_business_are_neither_cached_nor_woken(
    shim: Any, body: dict[str, Any]
) -> None:
    s, rt, rec = shim
    s.observe({"type": "ADDED", "object": body})
    assert not rec.woken and KEY not in rt.cache


def test_an_ingress_that_lost_its_annotation_is_woken_while_it_owns_certificates(
    shim: Any,
) -> None:
    s, _, rec = shim
    s.certificate_seen(CERT, None, made(ingress()))
    rec.woken.clear()
    s.observe({"type": "MODIFIED", "object": ingress(annotations={})})
    assert rec.woken == [KEY]


def test_status_patches_do_not_wake_the_ingress_but_edits_and_deletions_do(shim: Any) -> None:
    s, _, rec = shim
    body = made(ingress())
    s.certificate_seen(CERT, None, body)
    assert rec.woken == [KEY], "a Certificate seen at start wakes its Ingress"
    patched = copy.deepcopy(body)
    patched["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    patched["metadata"]["resourceVersion"] = "8"
    s.certificate_seen(CERT, body, patched)
    assert rec.woken == [KEY]
    edited = copy.deepcopy(patched)
    edited["metadata"]["generation"] = 2
    s.certificate_seen(CERT, patched, edited)
    s.certificate_seen(CERT, edited, None)
    assert rec.woken == [KEY, KEY, KEY]
    assert not s.owned, "a deleted Certificate leaves the index"


def test_deleting_a_certificate_that_stood_in_the_way_wakes_the_ingress(shim: Any) -> None:
    s, _, rec = shim
    s._blocked[CERT] = KEY
    s.certificate_seen(CERT, foreign(), None)
    assert rec.woken == [KEY]


def test_a_deleted_ingress_is_forgotten(shim: Any) -> None:
    s, rt, rec = shim
    s.observe({"type": "ADDED", "object": ingress()})
    s.observe({"type": "DELETED", "object": ingress()})
    assert rec.forgotten == [KEY] and KEY not in rt.cache


# --- Any input -------------------------------------------------------------------------------

_KEYS = [
    prefix + option
    for prefix in ("acmebridge.io/", "cert-manager.io/")
    for option in (*OPTIONS, "issuer", "cluster-issuer", "issuer-kind", "issuer-group")
]
_VALUES = st.sampled_from(
    [
        "",
        "ca",
        "RSA",
        "Ed25519",
        "2160h",
        "90d",
        "-5s",
        "0",
        "150",
        "a,b",
        '"a',
        "{}",
        "8192",
        "ClusterIssuer",
        "10.0.0.1",
        "*.a.example",
        "digital signature",
    ]
) | st.text(max_size=30)
_HOSTS = st.sampled_from(["a.example", "A.Example.", "10.0.0.1", "::1", "*.a.example", "", "a b"])
_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "hosts": st.lists(_HOSTS | st.text(max_size=10), max_size=4) | st.integers(),
        "secretName": st.sampled_from(["web-tls", "api-tls", "", "Bad_Name"]) | st.none(),
    },
)
_TLS = st.lists(_ENTRY | st.integers() | st.text(max_size=5), max_size=4) | st.none() | st.text()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    annotations=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8),
    tls=_TLS,
    labels=st.dictionaries(st.sampled_from(["app", "acmebridge.io/x"]), st.text(max_size=5)),
)
def test_no_ingress_crashes_the_shim_and_every_manifest_parses(
    annotations: dict[str, str], tls: Any, labels: dict[str, str]
) -> None:
    body = ingress(annotations, labels=labels)
    body["spec"]["tls"] = tls
    p = plan(body)
    todo = changes(p, ingress_uid=UID, existing={"web-tls": made(ingress())})
    for desired in p.certificates:
        assert CertificateSpec.from_body(desired.manifest["spec"]) == desired.spec
        assert desired.manifest["metadata"]["labels"][INGRESS_LABEL] == "web"
    if p.hold or not p.wanted:
        assert not p.certificates and not todo.create and not todo.update
    assert all(problem.message for problem in (*p.problems, *todo.problems))
