"""The CRDs in crds/ and the manifests in examples/, checked without a cluster.

What a real kube-apiserver decides (CEL compiles, its cost fits, bad input is refused) is in
tests/lab/test_crd_validation.py; this file keeps the shape that review depends on: group,
version, scope, printer columns, the status subresource, a message on every CEL rule, bounded
lists and strings under every rule, unknown fields kept only where the operator stores free-form
state, and Issuer and ClusterIssuer sharing one schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.examples import manifest_files

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
GROUP = "acmebridge.io"
VERSION = "v1alpha1"

Schema = dict[str, Any]
Visit = tuple[str, Schema, list[Schema]]  # a node's path, the node, its ancestors (nearest last)


def load_crd(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((CRDS / name).read_text()) if d]
    assert len(docs) == 1, f"{name} must hold exactly one CRD"
    return docs[0]


def only_version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def root_schema(crd: dict[str, Any]) -> Schema:
    return only_version(crd)["schema"]["openAPIV3Schema"]


def at(schema: Schema, dotted: str) -> Schema:
    """The schema node at a dotted path of property names; `[]` steps into array items."""
    node = schema
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: Schema, path: str = "") -> Iterator[Visit]:
    """Every schema node below and including `node`."""
    yield from _walk(node, path, [])


def _walk(node: Schema, path: str, ancestors: list[Schema]) -> Iterator[Visit]:
    yield path, node, ancestors
    below = [*ancestors, node]
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}", below)
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]", below)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}{{}}", below)


CRD_FILES = {
    "issuers.yaml": ("Issuer", "issuers", "Namespaced"),
    "clusterissuers.yaml": ("ClusterIssuer", "clusterissuers", "Cluster"),
    "certificates.yaml": ("Certificate", "certificates", "Namespaced"),
}
ALL_CRDS = pytest.mark.parametrize("filename", sorted(CRD_FILES))


@ALL_CRDS
def test_crd_is_acmebridge_v1alpha1_with_the_right_names_and_scope(filename: str) -> None:
    crd = load_crd(filename)
    kind, plural, scope = CRD_FILES[filename]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["scope"] == scope
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["listKind"]) == (kind, plural, f"{kind}List")
    version = only_version(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)


@ALL_CRDS
def test_status_is_a_subresource(filename: str) -> None:
    assert only_version(load_crd(filename))["subresources"] == {"status": {}}


READY = '.status.conditions[?(@.type=="Ready")].status'
READY_MESSAGE = '.status.conditions[?(@.type=="Ready")].message'
AGE = ".metadata.creationTimestamp"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        pytest.param(
            "issuers.yaml",
            [("READY", READY, 0), ("STATUS", READY_MESSAGE, 1), ("AGE", AGE, 0)],
            id="issuers show ready, the ready message when wide, and age",
        ),
        pytest.param(
            "clusterissuers.yaml",
            [("READY", READY, 0), ("STATUS", READY_MESSAGE, 1), ("AGE", AGE, 0)],
            id="cluster issuers show the same columns as issuers",
        ),
        pytest.param(
            "certificates.yaml",
            [
                ("READY", READY, 0),
                ("SECRET", ".spec.secretName", 0),
                ("ISSUER", ".spec.issuerRef.name", 0),
                ("NOT AFTER", ".status.notAfter", 0),
                ("RENEWAL", ".status.renewalTime", 0),
                ("STATUS", READY_MESSAGE, 1),
                ("AGE", AGE, 0),
            ],
            id="certificates answer ready, secret, issuer, expiry and renewal at a glance",
        ),
    ],
)
def test_printer_columns(filename: str, expected: list[tuple[str, str, int]]) -> None:
    columns = only_version(load_crd(filename))["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns] == expected
    types = {c["name"]: c["type"] for c in columns}
    # AGE is an age; NOT AFTER and RENEWAL lie in the future, which kubectl cannot show as an
    # age ("<invalid>"), so they print as timestamps.
    if "AGE" in types:
        assert types["AGE"] == "date"
    for future in ("NOT AFTER", "RENEWAL"):
        if future in types:
            assert types[future] == "string"


@ALL_CRDS
def test_every_schema_node_has_a_type(filename: str) -> None:
    """A structural schema types every node; int-or-string nodes are typed by their anyOf."""
    untyped = [
        path
        for path, node, _ in walk(root_schema(load_crd(filename)))
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


@ALL_CRDS
def test_objects_declare_properties_or_additional_properties_not_both(filename: str) -> None:
    both = [
        path
        for path, node, _ in walk(root_schema(load_crd(filename)))
        if "properties" in node and "additionalProperties" in node
    ]
    assert both == []


@ALL_CRDS
def test_every_cel_rule_has_a_message_a_user_can_act_on(filename: str) -> None:
    rules = [
        (path, rule)
        for path, node, _ in walk(root_schema(load_crd(filename)))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert rules, "each CRD validates something with CEL"
    for path, rule in rules:
        assert rule.get("rule", "").strip(), path
        assert len(rule.get("message", "").strip()) >= 20, f"{path}: {rule['rule']}"


@ALL_CRDS
def test_every_list_and_string_under_a_cel_rule_is_bounded(filename: str) -> None:
    """The API server estimates a rule's cost from maxItems and maxLength; unbounded inputs
    make a rule (and thus the CRD) refused, or leave per-request cost open-ended."""
    unbounded = []
    for path, node, ancestors in walk(root_schema(load_crd(filename))):
        if not node.get("x-kubernetes-validations"):
            continue
        for ancestor in [*ancestors, node]:
            if ancestor.get("type") == "array" and "maxItems" not in ancestor:
                unbounded.append(f"{path}: an enclosing list has no maxItems")
        scope = [node, *node.get("properties", {}).values()]
        scope += [n["items"] for n in scope if n.get("type") == "array"]
        for child in scope:
            if child.get("type") == "string" and "maxLength" not in child and "enum" not in child:
                unbounded.append(f"{path}: a string the rule reads has no maxLength")
    assert unbounded == []


# Unknown fields are kept only where a core/v1 type is passed through whole (and an Issuer's
# kopf progress); a Certificate's status is typed all the way down (domain/status.py).
PRESERVED = {
    "issuers.yaml": {
        ".status.kopf",
        ".spec.acme.solvers[].http01.ingress.podTemplate.spec.affinity",
    },
    "certificates.yaml": set(),
}
PRESERVED["clusterissuers.yaml"] = PRESERVED["issuers.yaml"]


@ALL_CRDS
def test_unknown_fields_are_kept_only_where_free_form_state_lives(filename: str) -> None:
    preserved = {
        path
        for path, node, _ in walk(root_schema(load_crd(filename)))
        if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert preserved == PRESERVED[filename]


def test_cluster_issuer_and_issuer_share_one_schema() -> None:
    issuer = root_schema(load_crd("issuers.yaml"))
    cluster = root_schema(load_crd("clusterissuers.yaml"))
    assert cluster["properties"] == issuer["properties"]
    assert cluster["required"] == issuer["required"]
    issuer_version = only_version(load_crd("issuers.yaml"))
    cluster_version = only_version(load_crd("clusterissuers.yaml"))
    assert cluster_version["additionalPrinterColumns"] == issuer_version["additionalPrinterColumns"]


@pytest.mark.parametrize(
    ("filename", "dotted", "default"),
    [
        pytest.param("certificates.yaml", "spec.issuerRef.kind", "Issuer", id="issuer kind"),
        pytest.param("certificates.yaml", "spec.issuerRef.group", GROUP, id="issuer group"),
        pytest.param("certificates.yaml", "spec.privateKey", {}, id="private key block"),
        pytest.param("certificates.yaml", "spec.privateKey.algorithm", "ECDSA", id="key is ECDSA"),
        pytest.param(
            "certificates.yaml", "spec.privateKey.encoding", "PKCS1", id="key encoding PKCS1"
        ),
        pytest.param(
            "certificates.yaml",
            "spec.privateKey.rotationPolicy",
            "Always",
            id="key rotated at every issuance",
        ),
        pytest.param(
            "issuers.yaml",
            "spec.acme.privateKeySecretRef.key",
            "tls.key",
            id="account key entry tls.key",
        ),
        pytest.param(
            "issuers.yaml",
            "spec.acme.externalAccountBinding.keyAlgorithm",
            "HS256",
            id="EAB MAC HS256",
        ),
        pytest.param(
            "issuers.yaml",
            "spec.acme.solvers.[].http01.ingress.serviceType",
            "ClusterIP",
            id="solver service ClusterIP",
        ),
    ],
)
def test_defaults(filename: str, dotted: str, default: object) -> None:
    assert at(root_schema(load_crd(filename)), dotted)["default"] == default


def test_usages_have_no_schema_default() -> None:
    """Unset usages depend on the key algorithm (key encipherment only for RSA), which an
    OpenAPI default cannot express; the operator fills them in."""
    assert "default" not in at(root_schema(load_crd("certificates.yaml")), "spec.usages")


def test_certificate_has_no_field_that_acme_cannot_honour_or_that_leaks_keys() -> None:
    schema = root_schema(load_crd("certificates.yaml"))
    spec = at(schema, "spec")["properties"]
    for field in ("isCA", "literalSubject", "keystores", "nameConstraints"):
        assert field not in spec
    # The pending key of an issuance is found by label, never named in status.
    assert "nextPrivateKeySecretName" not in at(schema, "status")["properties"]


def test_certificate_status_fields() -> None:
    status = at(root_schema(load_crd("certificates.yaml")), "status")["properties"]
    for field in ("notBefore", "notAfter", "renewalTime", "lastFailureTime"):
        assert status[field] == status[field] | {"type": "string", "format": "date-time"}
    for field in ("revision", "failedIssuanceAttempts"):
        assert status[field]["type"] == "integer"
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_issuer_status_records_the_account_and_the_directory() -> None:
    acme = at(root_schema(load_crd("issuers.yaml")), "status.acme")["properties"]
    assert {"uri", "lastRegisteredEmail", "lastPrivateKeyHash", "directory"} <= set(acme)
    directory = acme["directory"]["properties"]
    assert set(directory) == {
        "ari",
        "profiles",
        "profileDescriptions",
        "externalAccountRequired",
        "termsOfService",
        "website",
    }


# The patterns the CEL rules apply, run here through Python's re (the same syntax for these
# expressions as RE2) so that a regression shows without a cluster.


def cel_regex(dotted: str, index: int = 0) -> str:
    rule = at(root_schema(load_crd("certificates.yaml")), dotted)["x-kubernetes-validations"]
    found = re.search(r'matches\(r"(.*?)"\)', rule[index]["rule"])
    assert found, rule[index]["rule"]
    return found.group(1)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("web.demo.lab.test", True, id="an ordinary name"),
        pytest.param("*.demo.lab.test", True, id="a wildcard as the whole leftmost label"),
        pytest.param("localhost", True, id="a single label"),
        pytest.param("xn--bcher-kva.example", True, id="a punycode label"),
        pytest.param("a" * 63 + ".example", True, id="a label of 63 characters"),
        pytest.param("a" * 64 + ".example", False, id="a label of 64 characters"),
        pytest.param("web.*.example.com", False, id="a wildcard below the leftmost label"),
        pytest.param("*web.example.com", False, id="a partial wildcard label"),
        pytest.param("*", False, id="a bare wildcard"),
        pytest.param("Web.example.com", False, id="upper case"),
        pytest.param("web.example.com.", False, id="a trailing dot"),
        pytest.param("-web.example.com", False, id="a label starting with a hyphen"),
        pytest.param("web_1.example.com", False, id="an underscore"),
        pytest.param("web..example.com", False, id="an empty label"),
    ],
)
def test_dns_name_rule(name: str, valid: bool) -> None:
    assert bool(re.fullmatch(cel_regex("spec.dnsNames.[]"), name)) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("2160h", True, id="hours"),
        pytest.param("1h30m", True, id="hours and minutes"),
        pytest.param("1.5h", True, id="a fraction"),
        pytest.param("300s", True, id="seconds"),
        pytest.param("90d", False, id="days are not a Go unit"),
        pytest.param("-1h", False, id="a sign"),
        pytest.param("1 h", False, id="a space"),
        pytest.param("", False, id="empty"),
    ],
)
def test_duration_rule(value: str, valid: bool) -> None:
    assert bool(re.fullmatch(cel_regex("spec.duration"), value)) is valid
    assert cel_regex("spec.renewBefore") == cel_regex("spec.duration")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("web-tls", True, id="a plain name"),
        pytest.param("web.tls", True, id="dots"),
        pytest.param("Web-tls", False, id="upper case"),
        pytest.param("web_tls", False, id="an underscore"),
        pytest.param("web-", False, id="a trailing hyphen"),
    ],
)
def test_secret_name_rule(name: str, valid: bool) -> None:
    assert bool(re.fullmatch(cel_regex("spec.secretName"), name)) is valid


# Examples


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(path.relative_to(EXAMPLES)), doc)
        for path in manifest_files()
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_the_lab_demo_is_namespace_issuer_certificate() -> None:
    docs = {name: doc for name, doc in example_docs() if "/" not in name}
    assert docs["00-namespace.yaml"]["kind"] == "Namespace"
    assert docs["00-namespace.yaml"]["metadata"]["name"] == "demo"
    issuer = docs["10-issuer.yaml"]
    assert (issuer["kind"], issuer["metadata"]["name"]) == ("Issuer", "lab-pebble")
    assert issuer["metadata"]["namespace"] == "demo"
    assert issuer["spec"]["acme"]["server"] == "${PEBBLE_DIRECTORY_URL}"
    assert issuer["spec"]["acme"]["caBundle"] == "${PEBBLE_TLS_CA_B64}"
    certificate = docs["20-certificate.yaml"]
    assert (certificate["kind"], certificate["metadata"]["name"]) == ("Certificate", "web")
    assert certificate["metadata"]["namespace"] == "demo"
    assert certificate["spec"]["dnsNames"] == ["web.demo.lab.test"]
    assert certificate["spec"]["issuerRef"]["name"] == "lab-pebble"


def test_examples_use_only_the_documented_placeholders() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in manifest_files():
        for placeholder in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", path.read_text()):
            assert placeholder in {
                "PEBBLE_DIRECTORY_URL",
                "PEBBLE_TLS_CA_B64",
                "PEBBLE_ROOT_B64",
            }, path
            assert f"${{{placeholder}}}" in readme


def test_examples_are_acmebridge_resources() -> None:
    docs = example_docs()
    assert {name.split("/")[0] for name, _ in docs} >= {"more"}
    for name, doc in docs:
        if doc["kind"] == "Namespace":
            continue
        assert doc["apiVersion"] == f"{GROUP}/{VERSION}", name
        assert doc["kind"] in {"Issuer", "ClusterIssuer", "Certificate"}, name
