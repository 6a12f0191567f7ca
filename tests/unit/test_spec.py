"""Certificate specs: defaults, normalisation, the rules the CRD states, and the issuance hash.

The parser must not trust that the CRD schema was applied, so each rule is tested here with the
message a user reads in ``kubectl describe``.
"""

from __future__ import annotations

import base64
import string
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from acmebridge.domain.errors import SpecError
from acmebridge.domain.frozen import FrozenDict
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.names import canonical_ip, normalise_dns_name
from acmebridge.domain.spec import CertificateSpec, Identifier, IssuerRef, PrivateKeySpec, Subject
from tests.examples import manifest_files

ROOT = Path(__file__).resolve().parents[2]
ROOT_PEM = (ROOT / "tests" / "fixtures" / "root.pem").read_bytes()
ROOT_B64 = base64.b64encode(ROOT_PEM).decode()

CERT: dict[str, Any] = {
    "secretName": "web-tls",
    "issuerRef": {"name": "internal-ca"},
    "dnsNames": ["web.example.com"],
}


def cert(**changes: Any) -> CertificateSpec:
    return CertificateSpec.from_body({**CERT, **changes})


# --- Certificate -----------------------------------------------------------------------------


def test_minimal_certificate_gets_the_documented_defaults() -> None:
    spec = cert()
    assert spec == CertificateSpec(
        secret_name="web-tls",
        issuer_ref=IssuerRef(name="internal-ca", kind="Issuer", group="acmebridge.io"),
        dns_names=("web.example.com",),
        private_key=PrivateKeySpec("ECDSA", 256, "PKCS1", "Always"),
        usages=("digital signature",),
    )
    assert spec.duration is None and spec.renew_before is None


def test_every_certificate_field_is_mapped() -> None:
    spec = CertificateSpec.from_body(
        {
            "secretName": "shop-tls",
            "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer", "group": "acmebridge.io"},
            "commonName": "shop.example.com",
            "dnsNames": ["shop.example.com", "*.static.example.com"],
            "ipAddresses": ["10.0.0.7"],
            "uris": ["spiffe://cluster.local/ns/shop/sa/web"],
            "emailAddresses": ["ops@example.com"],
            "duration": "2160h",
            "renewBefore": "720h",
            "privateKey": {
                "algorithm": "RSA",
                "size": 3072,
                "encoding": "PKCS8",
                "rotationPolicy": "Never",
            },
            "usages": ["digital signature", "server auth"],
            "secretTemplate": {"labels": {"team": "shop"}, "annotations": {"example.com/a": "b"}},
            "subject": {
                "organizations": ["Example"],
                "organizationalUnits": ["Shop"],
                "countries": ["DE"],
                "localities": ["Berlin"],
                "provinces": ["BE"],
                "streetAddresses": ["Street 1"],
                "postalCodes": ["10115"],
                "serialNumber": "42",
            },
        }
    )
    assert spec == CertificateSpec(
        secret_name="shop-tls",
        issuer_ref=IssuerRef("internal-ca", "ClusterIssuer"),
        common_name="shop.example.com",
        dns_names=("shop.example.com", "*.static.example.com"),
        ip_addresses=("10.0.0.7",),
        uris=("spiffe://cluster.local/ns/shop/sa/web",),
        email_addresses=("ops@example.com",),
        duration=timedelta(days=90),
        renew_before=timedelta(days=30),
        private_key=PrivateKeySpec("RSA", 3072, "PKCS8", "Never"),
        usages=("digital signature", "server auth"),
        secret_template_labels=FrozenDict({"team": "shop"}),
        secret_template_annotations=FrozenDict({"example.com/a": "b"}),
        subject=Subject(
            organizations=("Example",),
            organizational_units=("Shop",),
            countries=("DE",),
            localities=("Berlin",),
            provinces=("BE",),
            street_addresses=("Street 1",),
            postal_codes=("10115",),
            serial_number="42",
        ),
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        pytest.param(
            {"dnsNames": ["Web.Example.COM.", "web.example.com", "api.example.com"]},
            "dns_names",
            ("web.example.com", "api.example.com"),
            id="names are lower cased without trailing dot and deduplicated in order",
        ),
        pytest.param(
            {"ipAddresses": ["2001:0db8:0000::0001", "2001:db8::1", "10.0.0.1"]},
            "ip_addresses",
            ("2001:db8::1", "10.0.0.1"),
            id="ip addresses are canonical and deduplicated",
        ),
        pytest.param(
            {"commonName": "WEB.example.com."},
            "common_name",
            "web.example.com",
            id="common name is normalised like the names",
        ),
        pytest.param({"commonName": ""}, "common_name", None, id="an empty common name is unset"),
        pytest.param(
            {"privateKey": {"algorithm": "RSA"}},
            "private_key",
            PrivateKeySpec("RSA", 2048),
            id="RSA defaults to 2048 bits",
        ),
        pytest.param(
            {"privateKey": {"algorithm": "ECDSA", "size": 0}},
            "private_key",
            PrivateKeySpec("ECDSA", 256),
            id="size zero means the default",
        ),
        pytest.param(
            {"privateKey": {"algorithm": "ECDSA", "size": 384.0}},
            "private_key",
            PrivateKeySpec("ECDSA", 384),
            id="an integral JSON float is an integer",
        ),
        pytest.param(
            {"privateKey": {"algorithm": "Ed25519", "encoding": "PKCS1"}},
            "private_key",
            PrivateKeySpec("Ed25519", 0, "PKCS8"),
            id="Ed25519 keys are always PKCS8",
        ),
        pytest.param(
            {"privateKey": {"algorithm": "RSA"}},
            "usages",
            ("digital signature", "key encipherment"),
            id="RSA keys default to key encipherment too",
        ),
        pytest.param(
            {"privateKey": {"algorithm": "Ed25519"}},
            "usages",
            ("digital signature",),
            id="non RSA keys default to digital signature only",
        ),
        pytest.param(
            {"usages": []},
            "usages",
            ("digital signature",),
            id="an empty usage list means the default",
        ),
        pytest.param(
            {"usages": ["server auth", "server auth"]},
            "usages",
            ("server auth",),
            id="usages are deduplicated",
        ),
        pytest.param(
            {"duration": "5m"},
            "duration",
            timedelta(minutes=5),
            id="five minutes is the shortest duration",
        ),
        pytest.param(
            {"renewBeforePercentage": 50}, "renew_before_percentage", 50, id="a percentage is kept"
        ),
        pytest.param(
            {"issuerRef": {"name": "ca", "kind": "", "group": ""}},
            "issuer_ref",
            IssuerRef("ca"),
            id="empty kind and group take the defaults",
        ),
        pytest.param({"duration": None, "uris": None}, "uris", (), id="null reads as absent"),
    ],
)
def test_normalises(changes: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(cert(**changes), field) == expected


BAD_CERTIFICATES = [
    pytest.param(
        {"secretName": None}, "spec.secretName: is required", id="refuses a missing secretName"
    ),
    pytest.param(
        {"secretName": "Web_TLS"},
        "spec.secretName: 'Web_TLS' is not a valid object name",
        id="refuses an invalid Secret name",
    ),
    pytest.param(
        {"issuerRef": None}, "spec.issuerRef: is required", id="refuses a missing issuerRef"
    ),
    pytest.param(
        {"issuerRef": "ca"}, "spec.issuerRef: must be an object", id="refuses a string issuerRef"
    ),
    pytest.param(
        {"issuerRef": {"name": "ca", "kind": "Foo"}},
        "spec.issuerRef.kind: must be one of Issuer, ClusterIssuer",
        id="refuses an unknown issuer kind",
    ),
    pytest.param(
        {"issuerRef": {"name": "ca", "group": "cert-manager.io"}},
        "spec.issuerRef.group: must be one of acmebridge.io",
        id="refuses another issuer group",
    ),
    pytest.param(
        {"dnsNames": "web.example.com"},
        "spec.dnsNames: must be a list",
        id="refuses a string for dnsNames",
    ),
    pytest.param(
        {"dnsNames": [42]}, "spec.dnsNames[0]: must be a string", id="refuses a number in dnsNames"
    ),
    pytest.param(
        {"dnsNames": ["ok.example", "a.*.example"]},
        "spec.dnsNames[1]: 'a.*.example': a wildcard may only be the whole leftmost label",
        id="refuses a wildcard in the middle",
    ),
    pytest.param(
        {"dnsNames": ["w*.example"]},
        "wildcard may only be the whole leftmost label",
        id="refuses a partial wildcard label",
    ),
    pytest.param(
        {"dnsNames": ["*"]}, "a wildcard needs a domain after it", id="refuses a bare wildcard"
    ),
    pytest.param(
        {"dnsNames": ["10.0.0.1"]},
        "is an IP address, not a DNS name: list it under ipAddresses",
        id="refuses an IP address among dnsNames",
    ),
    pytest.param(
        {"dnsNames": ["bücher.example"]},
        "write internationalised names as xn-- labels",
        id="refuses non ASCII names",
    ),
    pytest.param(
        {"dnsNames": ["-web.example"]},
        "may not start or end with a hyphen",
        id="refuses a label starting with a hyphen",
    ),
    pytest.param({"dnsNames": ["a..example"]}, "empty label", id="refuses an empty label"),
    pytest.param(
        {"dnsNames": ["a" * 64 + ".example"]},
        "longer than 63",
        id="refuses a label over 63 characters",
    ),
    pytest.param(
        {"dnsNames": [("a" * 60 + ".") * 5]},
        "longer than 253",
        id="refuses a name over 253 characters",
    ),
    pytest.param(
        {"ipAddresses": ["10.0.0.300"]},
        "spec.ipAddresses[0]: '10.0.0.300' is not an IPv4 or IPv6 address",
        id="refuses a bad IP address",
    ),
    pytest.param(
        {"ipAddresses": ["fe80::1%eth0"]}, "zone indexes", id="refuses an IPv6 zone index"
    ),
    pytest.param(
        {"commonName": "My Service"},
        "spec.commonName: 'My Service'",
        id="refuses a common name that is no identifier",
    ),
    pytest.param(
        {"commonName": "a" * 65},
        "spec.commonName: must be at most 64 characters",
        id="refuses a common name over 64 characters",
    ),
    pytest.param(
        {"dnsNames": [], "uris": ["spiffe://x/y"]},
        "spec: set dnsNames or ipAddresses",
        id="refuses a certificate with no ACME identifier",
    ),
    pytest.param(
        {"dnsNames": [f"n{i}.example" for i in range(101)]},
        "spec.dnsNames: may hold at most 100 entries",
        id="refuses more than 100 dnsNames",
    ),
    pytest.param(
        {
            "dnsNames": [f"n{i}.example" for i in range(60)],
            "ipAddresses": [f"10.0.0.{i}" for i in range(41)],
        },
        "at most 100 names in total",
        id="refuses more than 100 names in total",
    ),
    pytest.param(
        {"uris": ["not a uri"]},
        "spec.uris[0]: 'not a uri' is not an absolute URI",
        id="refuses a URI without scheme",
    ),
    pytest.param(
        {"emailAddresses": ["Ops <ops@example.com>"]},
        "spec.emailAddresses[0]",
        id="refuses an email with a display name",
    ),
    pytest.param(
        {"duration": "4m"},
        "spec.duration: must be at least 5m",
        id="refuses a duration under five minutes",
    ),
    pytest.param(
        {"duration": "90d"},
        "spec.duration: invalid duration '90d': Go durations have no 'd' unit",
        id="refuses days with a hint",
    ),
    pytest.param(
        {"duration": 3600}, "spec.duration: must be a string", id="refuses a number as duration"
    ),
    pytest.param(
        {"duration": "-1h"}, "spec.duration: must be positive", id="refuses a negative duration"
    ),
    pytest.param(
        {"renewBefore": "0s"}, "spec.renewBefore: must be positive", id="refuses a zero renewBefore"
    ),
    pytest.param(
        {"renewBefore": "30s"},
        "spec.renewBefore: must be at least 1m",
        id="refuses a renewBefore under a minute",
    ),
    pytest.param(
        {"duration": "1h", "renewBefore": "1h"},
        "spec.renewBefore: must be shorter than duration",
        id="refuses renewBefore equal to duration",
    ),
    pytest.param(
        {"renewBefore": "1h", "renewBeforePercentage": 10},
        "spec: renewBefore and renewBeforePercentage are mutually exclusive",
        id="refuses renewBefore with a percentage",
    ),
    pytest.param(
        {"renewBeforePercentage": 100},
        "spec.renewBeforePercentage: must be between 1 and 99",
        id="refuses a percentage of 100",
    ),
    pytest.param(
        {"renewBeforePercentage": True},
        "spec.renewBeforePercentage: must be an integer",
        id="refuses a boolean percentage",
    ),
    pytest.param(
        {"renewBeforePercentage": 33.5},
        "spec.renewBeforePercentage: must be an integer",
        id="refuses a fractional percentage",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "rsa"}},
        "spec.privateKey.algorithm: must be one of RSA, ECDSA, Ed25519",
        id="refuses a lower case algorithm",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "RSA", "size": 1024}},
        "spec.privateKey.size: 1024 is not a valid RSA key size",
        id="refuses RSA 1024",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "ECDSA", "size": 2048}},
        "not a valid ECDSA key size",
        id="refuses an RSA size for ECDSA",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "Ed25519", "size": 256}},
        "leave it unset",
        id="refuses a size for Ed25519",
    ),
    pytest.param(
        {"privateKey": {"rotationPolicy": "Sometimes"}},
        "spec.privateKey.rotationPolicy",
        id="refuses an unknown rotation policy",
    ),
    pytest.param(
        {"usages": ["server"]},
        "spec.usages[0]: unknown usage 'server'",
        id="refuses an unknown usage",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"acmebridge.io/certificate-name": "x"}}},
        "keys under acmebridge.io/ are set by the operator",
        id="refuses templating the ownership label",
    ),
    pytest.param(
        {"secretTemplate": {"annotations": {"acmebridge.io/certificate-uid": "x"}}},
        "keys under acmebridge.io/",
        id="refuses templating the ownership annotation",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"team": "a b"}}},
        "not a valid label value",
        id="refuses an invalid label value",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"bad key!": "x"}}},
        "not a valid key",
        id="refuses an invalid label key",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"team": 1}}},
        "must be a string",
        id="refuses a number as label value",
    ),
    pytest.param(
        {"subject": {"countries": "DE"}},
        "spec.subject.countries: must be a list",
        id="refuses a string for a subject list",
    ),
    pytest.param(
        {"subject": {"organizations": ["x" * 65]}},
        "spec.subject.organizations[0]: must be at most 64",
        id="refuses an overlong organisation",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD_CERTIFICATES)
def test_refuses_invalid_certificates(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        cert(**changes)
    assert caught.value.reason == "InvalidSpec"
    assert message in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="refuses a null spec"),
        pytest.param([], id="refuses a list spec"),
        pytest.param("spec", id="refuses a string spec"),
    ],
)
def test_refuses_a_spec_that_is_not_an_object(body: Any) -> None:
    with pytest.raises(SpecError, match="spec: must be an object"):
        CertificateSpec.from_body(body)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, [("dns", "web.example.com")], id="dns names become dns identifiers"),
        pytest.param(
            {"commonName": "web.example.com", "dnsNames": ["api.example.com", "web.example.com"]},
            [("dns", "api.example.com"), ("dns", "web.example.com")],
            id="a common name already listed is not repeated",
        ),
        pytest.param(
            {"commonName": "cn.example.com"},
            [("dns", "cn.example.com"), ("dns", "web.example.com")],
            id="a common name not listed is ordered first",
        ),
        pytest.param(
            {"commonName": "10.0.0.9", "ipAddresses": ["10.0.0.1"]},
            [("dns", "web.example.com"), ("ip", "10.0.0.9"), ("ip", "10.0.0.1")],
            id="an IP common name not listed joins the IP identifiers",
        ),
        pytest.param(
            {"commonName": "10.0.0.1", "dnsNames": [], "ipAddresses": ["2001:db8::1"]},
            [("ip", "10.0.0.1"), ("ip", "2001:db8::1")],
            id="an IP common name is an ip identifier",
        ),
        pytest.param(
            {"dnsNames": ["*.example.com", "example.com"], "ipAddresses": ["10.0.0.1"]},
            [("dns", "*.example.com"), ("dns", "example.com"), ("ip", "10.0.0.1")],
            id="dns names come before ip addresses",
        ),
    ],
)
def test_identifiers(changes: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert cert(**changes).identifiers() == tuple(Identifier(t, v) for t, v in expected)  # type: ignore[arg-type]


def test_a_common_name_joins_the_names_so_csr_order_and_certificate_agree() -> None:
    spec = cert(commonName="CN.example.com", ipAddresses=["10.0.0.1"])
    assert spec.dns_names == ("cn.example.com", "web.example.com")
    listed = cert(commonName="cn.example.com", dnsNames=["cn.example.com", "web.example.com"])
    assert (
        spec.issuance_hash()
        == cert(
            commonName="cn.example.com",
            dnsNames=["cn.example.com", "web.example.com"],
            ipAddresses=["10.0.0.1"],
        ).issuance_hash()
    )
    assert listed.identifiers() == spec.identifiers()[:2]


def test_identifiers_of_a_spec_built_directly_include_the_common_name() -> None:
    spec = CertificateSpec(
        secret_name="s", issuer_ref=IssuerRef("ca"), common_name="10.0.0.1", dns_names=("a.b",)
    )
    assert spec.identifiers() == (Identifier("ip", "10.0.0.1"), Identifier("dns", "a.b"))


def test_issuance_hash_is_pinned() -> None:
    # The hash is stored in status; changing what it covers re-issues every certificate on
    # upgrade. When this fails, make sure that is intended.
    assert cert().issuance_hash() == (
        "adbda96cf13bfb9627babfb8f5c28f18f4d11983d0c874cabbe866e3808fed68"
    )


UNCHANGED = [
    pytest.param({"renewBefore": "1h"}, id="renewBefore does not re-issue"),
    pytest.param({"renewBeforePercentage": 10}, id="renewBeforePercentage does not re-issue"),
    pytest.param({"secretTemplate": {"labels": {"a": "b"}}}, id="secretTemplate does not re-issue"),
    pytest.param({"secretName": "other"}, id="secretName does not re-issue by itself"),
    pytest.param(
        {"privateKey": {"rotationPolicy": "Never"}}, id="rotationPolicy does not re-issue"
    ),
    pytest.param(
        {"dnsNames": ["WEB.example.com."]}, id="spelling a name differently does not re-issue"
    ),
    pytest.param(
        {"issuerRef": {"name": "internal-ca", "kind": "Issuer"}},
        id="spelling out the default kind does not re-issue",
    ),
]
CHANGED = [
    pytest.param(
        {"dnsNames": ["web.example.com", "api.example.com"]}, id="an added name re-issues"
    ),
    pytest.param({"ipAddresses": ["10.0.0.1"]}, id="an added IP re-issues"),
    pytest.param({"uris": ["spiffe://a/b"]}, id="an added URI re-issues"),
    pytest.param({"emailAddresses": ["a@example.com"]}, id="an added email re-issues"),
    pytest.param({"commonName": "web.example.com"}, id="a common name re-issues"),
    pytest.param({"privateKey": {"algorithm": "RSA"}}, id="a key algorithm re-issues"),
    pytest.param({"privateKey": {"size": 384}}, id="a key size re-issues"),
    pytest.param({"privateKey": {"encoding": "PKCS8"}}, id="a key encoding re-issues"),
    pytest.param({"usages": ["digital signature", "client auth"]}, id="usages re-issue"),
    pytest.param({"duration": "24h"}, id="a duration re-issues"),
    pytest.param({"issuerRef": {"name": "other-ca"}}, id="another issuer re-issues"),
    pytest.param(
        {"issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}},
        id="another issuer kind re-issues",
    ),
    pytest.param({"subject": {"organizations": ["Example"]}}, id="a subject re-issues"),
]


@pytest.mark.parametrize("changes", UNCHANGED)
def test_issuance_hash_ignores(changes: dict[str, Any]) -> None:
    assert cert(**changes).issuance_hash() == cert().issuance_hash()


@pytest.mark.parametrize("changes", CHANGED)
def test_issuance_hash_changes(changes: dict[str, Any]) -> None:
    assert cert(**changes).issuance_hash() != cert().issuance_hash()


def test_issuance_hash_ignores_name_order() -> None:
    a = cert(dnsNames=["a.example", "b.example"], ipAddresses=["10.0.0.1", "10.0.0.2"])
    b = cert(dnsNames=["b.example", "a.example"], ipAddresses=["10.0.0.2", "10.0.0.1"])
    assert a.issuance_hash() == b.issuance_hash()


def test_specs_are_frozen_and_hashable() -> None:
    spec = cert(secretTemplate={"labels": {"team": "shop"}})
    assert hash(spec) == hash(cert(secretTemplate={"labels": {"team": "shop"}}))
    with pytest.raises(AttributeError):
        spec.secret_name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.secret_template_labels["x"] = "y"  # type: ignore[index]
    assert isinstance(spec.dns_names, tuple)


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Example.COM.", "example.com", id="lower case without the root dot"),
        pytest.param("*.example.com", "*.example.com", id="a leading wildcard label"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="punycode labels"),
        pytest.param("localhost", "localhost", id="a single label for internal names"),
        pytest.param("1password.example", "1password.example", id="a label starting with a digit"),
    ],
)
def test_normalise_dns_name(name: str, expected: str) -> None:
    assert normalise_dns_name(name) == expected


def test_normalise_dns_name_can_refuse_wildcards() -> None:
    with pytest.raises(ValueError, match="wildcard is not allowed"):
        normalise_dns_name("*.example.com", allow_wildcard=False)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        pytest.param("2001:0DB8:0:0::1", "2001:db8::1", id="IPv6 is compressed and lower case"),
        pytest.param(
            "::ffff:10.0.0.1", "::ffff:a00:1", id="an IPv4 mapped address keeps its family"
        ),
        pytest.param("10.0.0.1", "10.0.0.1", id="IPv4 is kept"),
    ],
)
def test_canonical_ip(ip: str, expected: str) -> None:
    assert canonical_ip(ip) == expected


# --- examples --------------------------------------------------------------------------------


def _examples() -> list[Any]:
    params = []
    for path in manifest_files():
        text = string.Template(path.read_text()).safe_substitute(
            PEBBLE_DIRECTORY_URL="https://localhost:14000/dir",
            PEBBLE_TLS_CA_B64=ROOT_B64,
            PEBBLE_ROOT_B64=ROOT_B64,
        )
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") in ("Certificate", "Issuer", "ClusterIssuer"):
                name = f"{path.relative_to(ROOT)} {doc['kind']} {doc['metadata']['name']}"
                params.append(pytest.param(doc, id=name))
    return params


@pytest.mark.parametrize("doc", _examples())
def test_examples_parse(doc: dict[str, Any]) -> None:
    if doc["kind"] == "Certificate":
        assert CertificateSpec.from_body(doc["spec"]).identifiers()
        return
    if doc["metadata"]["name"] == "internal-ca":
        # Its caBundle decodes to a reminder to paste the real root: not ready until replaced.
        with pytest.raises(SpecError, match="must hold at least one PEM certificate"):
            AcmeIssuerSpec.from_body(doc["spec"])
        return
    assert AcmeIssuerSpec.from_body(doc["spec"]).server.startswith("https://")
