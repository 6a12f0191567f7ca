"""Workload mTLS, the pure parts: annotations, names, the Certificate, Pods' owners, injection,
rolling restarts, and the names a CA cannot validate.

Every refusal is checked by the annotation it names and the words a user acts on, since that
message is what `kubectl apply` prints when the webhook refuses a workload.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from acmebridge.domain.injection import TRUST_CONFIGMAP, VOLUME_NAME, inject
from acmebridge.domain.issuer_spec import Http01IngressSolver, Rfc2136Solver, Solver, SolverSelector
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.validatable import first_unvalidatable, unvalidatable_name
from acmebridge.domain.workload_certificate import (
    RESTARTED_FOR,
    SEEN_CERTIFICATE,
    Workload,
    certificate_manifest,
    certificate_name,
    controlled_by,
    rollout_patch,
    workload_of_pod,
)
from acmebridge.domain.workload_mtls import (
    CONTAINERS,
    DNS_NAMES,
    DURATION,
    INJECT,
    ISSUER,
    ISSUER_KIND,
    MOUNT_PATH,
    RESTART_ON_RENEWAL,
    SPIFFE,
    AnnotationError,
    MtlsDefaults,
    parse_request,
    render_dns_names,
)

DEFAULTS = MtlsDefaults()
BASE = {INJECT: "true", ISSUER: "mesh-ca"}


def request(**extra: str) -> Any:
    return parse_request({**BASE, **extra}, defaults=DEFAULTS)


# --- annotations --------------------------------------------------------------------------------


def test_the_defaults_of_an_opted_in_workload() -> None:
    r = request()
    assert r.issuer_name == "mesh-ca" and r.issuer_kind == "Issuer"
    assert r.duration == timedelta(hours=24)
    assert r.mount_path == "/var/run/acmebridge"
    assert r.containers == () and r.dns_names == ()
    assert not r.spiffe and not r.restart_on_renewal


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({}, id="no annotations is no opt-in"),
        pytest.param({INJECT: "false", ISSUER: "x"}, id="inject false is no opt-in"),
        pytest.param({ISSUER: "x", DNS_NAMES: "{bad"}, id="other annotations alone do nothing"),
    ],
)
def test_no_opt_in(annotations: dict[str, str]) -> None:
    assert parse_request(annotations, defaults=DEFAULTS) is None


def test_every_annotation_is_read() -> None:
    r = request(
        **{
            ISSUER_KIND: "ClusterIssuer",
            DNS_NAMES: "a.mesh.example.com, {name}.{namespace}.mesh.example.com",
            DURATION: "1h30m",
            MOUNT_PATH: "/etc/tls",
            CONTAINERS: "app,envoy",
            SPIFFE: "true",
            RESTART_ON_RENEWAL: "true",
        }
    )
    assert r.issuer_kind == "ClusterIssuer"
    assert r.dns_names == ("a.mesh.example.com", "{name}.{namespace}.mesh.example.com")
    assert r.duration == timedelta(minutes=90)
    assert (r.mount_path, r.containers) == ("/etc/tls", ("app", "envoy"))
    assert r.spiffe and r.restart_on_renewal


@pytest.mark.parametrize(
    ("annotations", "annotation", "words"),
    [
        pytest.param({INJECT: "yes"}, INJECT, '"true" or "false"', id="inject must be a boolean"),
        pytest.param({ISSUER: ""}, ISSUER, "is required", id="an issuer is required"),
        pytest.param({ISSUER: "Mesh_CA"}, ISSUER, "not a valid Issuer name", id="issuer name"),
        pytest.param({ISSUER_KIND: "Vault"}, ISSUER_KIND, "ClusterIssuer", id="issuer kind"),
        pytest.param({DNS_NAMES: "a.example.com,,b"}, DNS_NAMES, "empty entry", id="empty name"),
        pytest.param(
            {DNS_NAMES: "{pod}.example.com"}, DNS_NAMES, "{pod}", id="unknown placeholder"
        ),
        pytest.param({DNS_NAMES: "{name.example.com"}, DNS_NAMES, "unmatched", id="open brace"),
        pytest.param({DNS_NAMES: "*.example.com"}, DNS_NAMES, "wildcard", id="no wildcards"),
        pytest.param({DNS_NAMES: "a b.example.com"}, DNS_NAMES, "labels", id="bad characters"),
        pytest.param({DURATION: "1d"}, DURATION, "invalid duration", id="duration syntax"),
        pytest.param({DURATION: "4m"}, DURATION, "at least 5m", id="duration minimum"),
        pytest.param({MOUNT_PATH: "etc/tls"}, MOUNT_PATH, "absolute", id="relative mount path"),
        pytest.param({MOUNT_PATH: "/etc/../tls"}, MOUNT_PATH, "normalised", id="dotdot path"),
        pytest.param({MOUNT_PATH: "/"}, MOUNT_PATH, "other than '/'", id="root mount path"),
        pytest.param({CONTAINERS: "app,Envoy"}, CONTAINERS, "'Envoy'", id="container name"),
        pytest.param({SPIFFE: "on"}, SPIFFE, '"true" or "false"', id="spiffe boolean"),
        pytest.param({RESTART_ON_RENEWAL: "1"}, RESTART_ON_RENEWAL, "false", id="restart bool"),
    ],
)
def test_bad_values_name_their_annotation(
    annotations: dict[str, str], annotation: str, words: str
) -> None:
    with pytest.raises(AnnotationError) as caught:
        parse_request({**BASE, **annotations}, defaults=DEFAULTS)
    assert caught.value.annotation == annotation
    assert str(caught.value).startswith(annotation + ": ")
    assert words in str(caught.value)


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "issuer_template", "operator_template", "expected"),
    [
        pytest.param(
            {DNS_NAMES: "{name}.{namespace}.mesh.example.com,Web.Example.com."},
            "{name}.issuer.example.com",
            "{name}.operator.example.com",
            ("web.shop.mesh.example.com", "web.example.com"),
            id="the workload's own names win, rendered and normalised",
        ),
        pytest.param(
            {},
            "{name}.{namespace}.issuer.example.com",
            "{name}.operator.example.com",
            ("web.shop.issuer.example.com",),
            id="else the issuer's template",
        ),
        pytest.param(
            {},
            None,
            "{name}.{namespace}.svc.example.com",
            ("web.shop.svc.example.com",),
            id="else the operator's template",
        ),
    ],
)
def test_dns_names(
    annotations: dict[str, str],
    issuer_template: str | None,
    operator_template: str,
    expected: tuple[str, ...],
) -> None:
    defaults = MtlsDefaults(dns_names_template=operator_template)
    r = parse_request({**BASE, **annotations}, defaults=defaults)
    names = render_dns_names(
        r, workload="web", namespace="shop", issuer_template=issuer_template, defaults=defaults
    )
    assert names == expected


def test_no_names_anywhere_says_where_names_can_come_from() -> None:
    with pytest.raises(AnnotationError) as caught:
        render_dns_names(
            request(), workload="web", namespace="shop", issuer_template=None, defaults=DEFAULTS
        )
    assert caught.value.annotation == DNS_NAMES
    assert "acmebridge.io/dns-names-template" in str(caught.value)
    assert "--workload-dns-names-template" in str(caught.value)


def test_a_rendered_name_that_is_too_long_is_refused_with_the_template() -> None:
    r = request(**{DNS_NAMES: "{name}.example.com"})
    with pytest.raises(AnnotationError, match=r"'\{name\}.example.com' .* gives"):
        render_dns_names(
            r, workload="w" * 70, namespace="shop", issuer_template=None, defaults=DEFAULTS
        )


# --- the Certificate ----------------------------------------------------------------------------

WEB = Workload("Deployment", "shop", "web")


def test_the_certificate_is_owned_by_the_workload_and_valid_for_the_core() -> None:
    r = request(**{SPIFFE: "true", DURATION: "2h"})
    body = certificate_manifest(
        WEB,
        uid="u-1",
        request=r,
        dns_names=["web.shop.mesh.example.com"],
        service_account="web-sa",
        defaults=MtlsDefaults(spiffe_trust_domain="corp.example"),
    )
    assert body["metadata"]["name"] == "web-deployment-mtls"
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert controlled_by(body) == (WEB, "u-1")
    spec = CertificateSpec.from_body(body["spec"])
    assert spec.secret_name == "web-deployment-mtls"
    assert spec.dns_names == ("web.shop.mesh.example.com",)
    assert spec.uris == ("spiffe://corp.example/ns/shop/sa/web-sa",)
    assert spec.duration == timedelta(hours=2)
    assert {"server auth", "client auth"} <= set(spec.usages)
    assert spec.secret_template_labels["workload.acmebridge.io/uid"] == "u-1"
    assert not any(k.startswith("acmebridge.io/") for k in spec.secret_template_labels)


def test_names_of_certificates_are_per_kind_and_fit_253_characters() -> None:
    assert certificate_name("StatefulSet", "db") == "db-statefulset-mtls"
    assert certificate_name("Deployment", "db") != certificate_name("DaemonSet", "db")
    long = certificate_name("Deployment", "a" * 250)
    assert len(long) <= 253 and long != certificate_name("Deployment", "a" * 249 + "b")


# --- which workload a Pod belongs to ------------------------------------------------------------


def pod(kind: str, owner: str, *, hash_: str | None = None, api: str = "apps/v1") -> Any:
    labels = {"pod-template-hash": hash_} if hash_ else {}
    ref = {"apiVersion": api, "kind": kind, "name": owner, "controller": True}
    return {"metadata": {"labels": labels, "ownerReferences": [ref]}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            pod("ReplicaSet", "web-7c949f9548", hash_="7c949f9548"),
            Workload("Deployment", "shop", "web"),
            id="a Deployment's Pod, through its ReplicaSet",
        ),
        pytest.param(
            pod("ReplicaSet", "my-web-app-5d8f", hash_="5d8f"),
            Workload("Deployment", "shop", "my-web-app"),
            id="a Deployment whose name has dashes",
        ),
        pytest.param(pod("StatefulSet", "db"), Workload("StatefulSet", "shop", "db"), id="sts"),
        pytest.param(pod("DaemonSet", "agent"), Workload("DaemonSet", "shop", "agent"), id="ds"),
        pytest.param(pod("ReplicaSet", "plain"), None, id="a ReplicaSet of no Deployment"),
        pytest.param(pod("Job", "batch", api="batch/v1"), None, id="a Job's Pod"),
        pytest.param({"metadata": {}}, None, id="a bare Pod"),
    ],
)
def test_workload_of_pod(body: Any, expected: Workload | None) -> None:
    assert workload_of_pod(body, "shop") == expected


# --- rolling restarts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "restart", "expected"),
    [
        pytest.param("A", True, None, id="the same certificate changes nothing"),
        pytest.param(
            None,
            True,
            {"metadata": {"annotations": {SEEN_CERTIFICATE: "B"}}},
            id="the first certificate is only recorded: the pods waited for it",
        ),
        pytest.param(
            "A",
            False,
            {"metadata": {"annotations": {SEEN_CERTIFICATE: "B"}}},
            id="a renewal without the annotation reaches the pods through the volume",
        ),
        pytest.param(
            "A",
            True,
            {
                "metadata": {"annotations": {SEEN_CERTIFICATE: "B"}},
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR: "B"}}}},
            },
            id="a renewal with restart-on-renewal rolls the pods once",
        ),
    ],
)
def test_rollout_patch(seen: str | None, restart: bool, expected: Any) -> None:
    current = "A" if expected is None else "B"
    assert rollout_patch(seen=seen, current=current, restart_on_renewal=restart) == expected


# --- injection ----------------------------------------------------------------------------------


POD_SPEC = {
    "containers": [
        {"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "envoy"},
    ],
    "initContainers": [
        {"name": "migrate"},
        {"name": "proxy", "restartPolicy": "Always"},
    ],
    "volumes": [{"name": "data", "emptyDir": {}}],
}


def mounted(result: Any) -> dict[str, str]:
    found = {}
    for c in result.containers + result.init_containers:
        for m in c.get("volumeMounts") or []:
            if m["name"] == VOLUME_NAME:
                assert m["readOnly"] is True
                found[c["name"]] = m["mountPath"]
    return found


def test_every_container_and_native_sidecar_gets_the_mount_by_default() -> None:
    result = inject(POD_SPEC, request(), secret_name="web-deployment-mtls", trust_bundle=False)
    assert result is not None
    assert mounted(result) == {
        "app": "/var/run/acmebridge",
        "envoy": "/var/run/acmebridge",
        "proxy": "/var/run/acmebridge",
    }
    volume = result.volumes[-1]
    assert volume["projected"]["sources"] == [{"secret": {"name": "web-deployment-mtls"}}]
    assert result.volumes[0] == {"name": "data", "emptyDir": {}}
    assert POD_SPEC["containers"][1] == {"name": "envoy"}, "the input is not changed"


def test_named_containers_only_and_ca_from_the_trust_bundle() -> None:
    r = request(**{CONTAINERS: "envoy,migrate", MOUNT_PATH: "/etc/tls"})
    result = inject(POD_SPEC, r, secret_name="s", trust_bundle=True)
    assert result is not None
    assert mounted(result) == {"envoy": "/etc/tls", "migrate": "/etc/tls"}
    sources = result.volumes[-1]["projected"]["sources"]
    assert sources[0]["secret"]["items"] == [
        {"key": "tls.crt", "path": "tls.crt"},
        {"key": "tls.key", "path": "tls.key"},
    ]
    assert sources[1]["configMap"] == {
        "name": TRUST_CONFIGMAP,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_a_pod_injected_already_is_left_alone() -> None:
    first = inject(POD_SPEC, request(), secret_name="s", trust_bundle=False)
    assert first is not None
    again = {**POD_SPEC, "volumes": first.volumes, "containers": first.containers}
    assert inject(again, request(), secret_name="s", trust_bundle=False) is None


@pytest.mark.parametrize(
    ("annotations", "annotation", "words"),
    [
        pytest.param({CONTAINERS: "app,sidecar"}, CONTAINERS, "'sidecar'", id="unknown container"),
        pytest.param({MOUNT_PATH: "/data"}, MOUNT_PATH, "already mounts", id="taken mount path"),
    ],
)
def test_injection_refusals_name_the_annotation(
    annotations: dict[str, str], annotation: str, words: str
) -> None:
    with pytest.raises(AnnotationError) as caught:
        inject(POD_SPEC, request(**annotations), secret_name="s", trust_bundle=False)
    assert caught.value.annotation == annotation and words in str(caught.value)


# --- names the CA cannot validate --------------------------------------------------------------

HTTP = Solver(http01=Http01IngressSolver(ingress_class_name="nginx"))
DNS = Solver(
    selector=SolverSelector(dns_zones=("dns.example.com",)),
    dns01=Rfc2136Solver(nameserver="10.0.0.53"),
)
ONLY_MESH = Solver(
    selector=SolverSelector(dns_zones=("mesh.example.com",)),
    http01=Http01IngressSolver(ingress_class_name="nginx"),
)


@pytest.mark.parametrize(
    ("name", "solvers", "words"),
    [
        pytest.param("web.mesh.example.com", [HTTP], None, id="a routed name validates"),
        pytest.param("web.dns.example.com", [DNS], None, id="a name in a DNS-01 zone validates"),
        pytest.param(
            "web.shop.svc.cluster.local",
            [HTTP, DNS],
            "'web.shop.mesh.example.com'",
            id="a Service name is cluster-internal, with a routed name suggested",
        ),
        pytest.param(
            "web.shop.svc.corp.local", [HTTP], "cluster-internal", id="another cluster domain"
        ),
        pytest.param("web.shop.svc", [HTTP], "cluster-internal", id="the short Service name"),
        pytest.param("web", [HTTP], "cluster-internal", id="a bare name"),
        pytest.param("localhost", [HTTP], "cluster-internal", id="localhost"),
        pytest.param("127.0.0.1", [HTTP], "loopback", id="a loopback address"),
        pytest.param("10.0.0.7", [HTTP], None, id="a routable address is the CA's to judge"),
        pytest.param(
            "web.other.example.com", [ONLY_MESH], "no solver of the issuer", id="no solver"
        ),
        pytest.param("*.mesh.example.com", [HTTP], "dns01 solver", id="a wildcard over HTTP-01"),
    ],
)
def test_unvalidatable_name(name: str, solvers: list[Solver], words: str | None) -> None:
    message = unvalidatable_name(name, solvers, cluster_domain="corp.local")
    if words is None:
        assert message is None
    else:
        assert message is not None and words in message
        assert name in message, "the message says which name"


def test_the_cluster_domain_is_taken_from_the_operator() -> None:
    assert unvalidatable_name("web.shop.svc.k8s.example", [HTTP], cluster_domain="k8s.example")
    assert unvalidatable_name("web.k8s.example", [HTTP], cluster_domain="k8s.example")
    message = unvalidatable_name("web.shop.svc.cluster.local", [HTTP])
    assert message is not None and "HTTP-01" in message and "DNS-01" in message


def test_first_unvalidatable_reports_the_first_bad_name() -> None:
    names = ["web.mesh.example.com", "web.shop.svc.cluster.local", "web"]
    message = first_unvalidatable(names, [HTTP])
    assert message is not None and "'web.shop.svc.cluster.local'" in message
    assert first_unvalidatable(names[:1], [HTTP]) is None
