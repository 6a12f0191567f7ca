"""Issuer specs (spec.acme): defaults, the rules the CRD states, solvers and the account hash.

As for Certificates, the parser must not trust that the CRD schema was applied; each rule is
tested with the message a user reads in ``kubectl describe``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from acmebridge.domain.errors import SpecError
from acmebridge.domain.frozen import FrozenDict, thaw_json
from acmebridge.domain.issuer_spec import (
    MAX_PEM_BYTES,
    AcmeIssuerSpec,
    ExternalAccountBinding,
    Http01IngressSolver,
    Rfc2136Solver,
    SecretKeySelector,
    Solver,
    SolverSelector,
)

ROOT = Path(__file__).resolve().parents[2]
ROOT_PEM = (ROOT / "tests" / "fixtures" / "root.pem").read_bytes()
ROOT_B64 = base64.b64encode(ROOT_PEM).decode()

ISSUER: dict[str, Any] = {
    "acme": {
        "server": "https://ca.internal.example/acme/acme/directory",
        "privateKeySecretRef": {"name": "account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}],
    }
}


def acme(**changes: Any) -> AcmeIssuerSpec:
    return AcmeIssuerSpec.from_body({"acme": {**ISSUER["acme"], **changes}})


def test_minimal_issuer_gets_the_documented_defaults() -> None:
    spec = AcmeIssuerSpec.from_body(ISSUER)
    assert spec == AcmeIssuerSpec(
        server="https://ca.internal.example/acme/acme/directory",
        private_key_secret_ref=SecretKeySelector("account", "tls.key"),
        solvers=(Solver(http01=Http01IngressSolver(ingress_class_name="nginx")),),
    )
    assert spec.solvers[0].selector == SolverSelector()
    assert spec.solvers[0].http01 is not None
    assert spec.solvers[0].http01.service_type == "ClusterIP"


def test_every_issuer_field_is_mapped() -> None:
    spec = AcmeIssuerSpec.from_body(
        {
            "acme": {
                "server": "https://ca.internal.example/acme/acme/directory",
                "email": "pki@example.com",
                "caBundle": ROOT_B64,
                "issuingCABundle": ROOT_B64,
                "privateKeySecretRef": {"name": "account", "key": "account.key"},
                "externalAccountBinding": {
                    "keyID": "kid-1",
                    "keySecretRef": {"name": "eab", "key": "secret"},
                    "keyAlgorithm": "HS512",
                },
                "profile": "tlsserver",
                "preferredChain": "Example Root",
                "disableAccountKeyGeneration": True,
                "solvers": [
                    {
                        "selector": {
                            "dnsNames": ["Web.Example.com."],
                            "dnsZones": ["Apps.Example.com"],
                            "matchLabels": {"team": "shop"},
                        },
                        "http01": {
                            "ingress": {
                                "class": "nginx",
                                "serviceType": "NodePort",
                                "podTemplate": {
                                    "metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}},
                                    "spec": {
                                        "nodeSelector": {"kubernetes.io/os": "linux"},
                                        "tolerations": [{"key": "k", "operator": "Exists"}],
                                        "affinity": {"nodeAffinity": {}},
                                        "priorityClassName": "high",
                                        "imagePullSecrets": [{"name": "pull"}],
                                        "resources": {"limits": {"memory": "64Mi", "cpu": 1}},
                                    },
                                },
                                "ingressTemplate": {
                                    "metadata": {"labels": {"e": "f"}, "annotations": {"g": "h"}}
                                },
                            }
                        },
                    },
                    {
                        "dns01": {
                            "rfc2136": {
                                "nameserver": "10.0.0.53",
                                "tsigKeyName": "acme",
                                "tsigAlgorithm": "HMACSHA256",
                                "tsigSecretSecretRef": {"name": "tsig", "key": "secret"},
                            }
                        }
                    },
                ],
            }
        }
    )
    http01 = spec.solvers[0].http01
    assert http01 is not None
    assert spec == AcmeIssuerSpec(
        server="https://ca.internal.example/acme/acme/directory",
        email="pki@example.com",
        ca_bundle=ROOT_PEM,
        issuing_ca_bundle=ROOT_PEM,
        private_key_secret_ref=SecretKeySelector("account", "account.key"),
        external_account_binding=ExternalAccountBinding(
            "kid-1", SecretKeySelector("eab", "secret"), "HS512"
        ),
        profile="tlsserver",
        preferred_chain="Example Root",
        disable_account_key_generation=True,
        solvers=(
            Solver(
                selector=SolverSelector(
                    dns_names=("web.example.com",),
                    dns_zones=("apps.example.com",),
                    match_labels=FrozenDict({"team": "shop"}),
                ),
                http01=Http01IngressSolver(
                    class_name="nginx",
                    service_type="NodePort",
                    pod_labels=FrozenDict({"a": "b"}),
                    pod_annotations=FrozenDict({"c": "d"}),
                    pod_spec_overrides=http01.pod_spec_overrides,
                    ingress_labels=FrozenDict({"e": "f"}),
                    ingress_annotations=FrozenDict({"g": "h"}),
                ),
            ),
            Solver(
                dns01=Rfc2136Solver(
                    nameserver="10.0.0.53:53",
                    tsig_key_name="acme",
                    tsig_algorithm="HMACSHA256",
                    tsig_secret_ref=SecretKeySelector("tsig", "secret"),
                )
            ),
        ),
    )
    assert thaw_json(http01.pod_spec_overrides) == {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": "high",
        "imagePullSecrets": [{"name": "pull"}],
        "resources": {"limits": {"memory": "64Mi", "cpu": 1}},
    }


def test_pod_overrides_serialise_as_plain_json() -> None:
    spec = acme(
        solvers=[
            {
                "http01": {
                    "ingress": {
                        "podTemplate": {"spec": {"tolerations": [{"key": "k"}], "affinity": {}}}
                    }
                }
            }
        ]
    )
    http01 = spec.solvers[0].http01
    assert http01 is not None
    manifest = {"spec": {"tolerations": http01.pod_spec_overrides["tolerations"]}}
    assert json.loads(json.dumps(manifest)) == {"spec": {"tolerations": [{"key": "k"}]}}
    assert hash(spec) == hash(spec)


@pytest.mark.parametrize(
    ("nameserver", "expected"),
    [
        pytest.param("10.0.0.53", "10.0.0.53:53", id="the port defaults to 53"),
        pytest.param("10.0.0.53:5353", "10.0.0.53:5353", id="an explicit port is kept"),
        pytest.param("ns1.example.com", "ns1.example.com:53", id="a host name is accepted"),
        pytest.param("[2001:0db8::53]:53", "[2001:db8::53]:53", id="an IPv6 address is canonical"),
        pytest.param("[2001:db8::53]", "[2001:db8::53]:53", id="an IPv6 address without port"),
    ],
)
def test_nameserver_is_normalised(nameserver: str, expected: str) -> None:
    spec = acme(solvers=[{"dns01": {"rfc2136": {"nameserver": nameserver}}}])
    assert spec.solvers[0].dns01 == Rfc2136Solver(nameserver=expected)


@pytest.mark.parametrize(
    ("dns01", "protocol", "cname_strategy"),
    [
        pytest.param({}, "UDP", "None", id="UDP and no CNAME following by default"),
        pytest.param({"rfc2136": {"protocol": "TCP"}}, "TCP", "None", id="protocol TCP is kept"),
        pytest.param({"cnameStrategy": "Follow"}, "UDP", "Follow",
                     id="cnameStrategy Follow, one level above rfc2136 as in cert-manager"),
        pytest.param({"cnameStrategy": "None", "rfc2136": {"protocol": "UDP"}}, "UDP", "None",
                     id="the defaults written out"),
    ],
)  # fmt: skip
def test_dns01_protocol_and_cname_strategy(
    dns01: dict[str, Any], protocol: str, cname_strategy: str
) -> None:
    rfc2136 = {"nameserver": "10.0.0.53", **dns01.get("rfc2136", {})}
    body = {**{k: v for k, v in dns01.items() if k != "rfc2136"}, "rfc2136": rfc2136}
    spec = acme(solvers=[{"dns01": body}])
    assert spec.solvers[0].dns01 == Rfc2136Solver(
        nameserver="10.0.0.53:53", protocol=protocol, cname_strategy=cname_strategy
    )


def _solver(solver: dict[str, Any]) -> dict[str, Any]:
    return {"solvers": [solver]}


BAD_ISSUERS = [
    pytest.param({"server": None}, "spec.acme.server: is required", id="refuses a missing server"),
    pytest.param(
        {"server": "http://ca.example/dir"},
        "must be the https:// URL",
        id="refuses a plain http server",
    ),
    pytest.param(
        {"server": "https:///dir"}, "must be the https:// URL", id="refuses a server without host"
    ),
    pytest.param(
        {"server": "https://ca.example:99999/dir"},
        "must be the https:// URL",
        id="refuses a port out of range",
    ),
    pytest.param(
        {"server": "https://[::1/dir"}, "must be the https:// URL", id="refuses a broken IPv6 host"
    ),
    pytest.param(
        {"email": "pki"},
        "spec.acme.email: 'pki' is not a plain address",
        id="refuses an email without at",
    ),
    pytest.param(
        {"privateKeySecretRef": None},
        "spec.acme.privateKeySecretRef: is required",
        id="refuses a missing account key ref",
    ),
    pytest.param(
        {"privateKeySecretRef": {"key": "k"}},
        "spec.acme.privateKeySecretRef.name: is required",
        id="refuses an account key ref without name",
    ),
    pytest.param(
        {"privateKeySecretRef": {"name": "a", "key": "../x"}},
        "not a valid Secret data key",
        id="refuses a bad Secret key",
    ),
    pytest.param(
        {"caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n"},
        "spec.acme.caBundle: is PEM text, but must be base64-encoded PEM",
        id="refuses raw PEM with a hint",
    ),
    pytest.param(
        {"caBundle": "not base64!"},
        "spec.acme.caBundle: is not valid base64",
        id="refuses text that is not base64",
    ),
    pytest.param(
        {"caBundle": base64.b64encode(b"hello").decode()},
        "must hold at least one PEM certificate",
        id="refuses base64 without a certificate",
    ),
    pytest.param(
        {"issuingCABundle": base64.b64encode(b"x" * (MAX_PEM_BYTES + 1)).decode()},
        "spec.acme.issuingCABundle: must be at most",
        id="refuses a bundle over a mebibyte",
    ),
    pytest.param(
        {"caBundle": ROOT_B64, "skipTLSVerify": True},
        "caBundle and skipTLSVerify are mutually exclusive",
        id="refuses caBundle with skipTLSVerify",
    ),
    pytest.param(
        {"skipTLSVerify": "yes"},
        "spec.acme.skipTLSVerify: must be true or false",
        id="refuses a string boolean",
    ),
    pytest.param(
        {"externalAccountBinding": {"keySecretRef": {"name": "e", "key": "k"}}},
        "spec.acme.externalAccountBinding.keyID: is required",
        id="refuses EAB without keyID",
    ),
    pytest.param(
        {"externalAccountBinding": {"keyID": "k", "keySecretRef": {"name": "e"}}},
        "externalAccountBinding.keySecretRef.key: is required",
        id="refuses EAB secret without key",
    ),
    pytest.param(
        {
            "externalAccountBinding": {
                "keyID": "k",
                "keySecretRef": {"name": "e", "key": "k"},
                "keyAlgorithm": "RS256",
            }
        },
        "keyAlgorithm: must be one of HS256, HS384, HS512",
        id="refuses an EAB algorithm that is not HMAC",
    ),
    pytest.param(
        {"profile": "tls server"}, "spec.acme.profile", id="refuses a profile with spaces"
    ),
    pytest.param(
        {"solvers": {}}, "spec.acme.solvers: must be a list", id="refuses solvers as an object"
    ),
    pytest.param(
        {"solvers": [{}] * 21},
        "spec.acme.solvers: may hold at most 20",
        id="refuses more than 20 solvers",
    ),
    pytest.param(
        _solver({}),
        "spec.acme.solvers[0]: each solver needs exactly one of http01 or dns01",
        id="refuses a solver with neither kind",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {}}, "dns01": {"rfc2136": {"nameserver": "ns"}}}),
        "exactly one of http01 or dns01",
        id="refuses a solver with both kinds",
    ),
    pytest.param(
        _solver({"http01": {"gatewayHTTPRoute": {}}}),
        "spec.acme.solvers[0].http01.ingress: is required",
        id="refuses gateway routes",
    ),
    pytest.param(
        _solver({"dns01": {"cloudflare": {}}}),
        "spec.acme.solvers[0].dns01.rfc2136: is required",
        id="refuses other DNS providers",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"ingressClassName": "nginx", "class": "nginx"}}}),
        "set at most one of ingressClassName, class or name (got ingressClassName, class)",
        id="refuses two ways to route the challenge",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"serviceType": "LoadBalancer"}}}),
        "serviceType: must be one of ClusterIP, NodePort",
        id="refuses a load balancer service",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"podTemplate": {"spec": {"hostNetwork": True}}}}}),
        "solvers[0].http01.ingress.podTemplate.spec.hostNetwork: cannot be set on the solver Pod",
        id="refuses host networking for the solver pod",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"podTemplate": {"spec": {"containers": []}}}}}),
        "cannot be set on the solver Pod",
        id="refuses replacing the solver containers",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"podTemplate": {"spec": {"tolerations": ["x"]}}}}}),
        "podTemplate.spec.tolerations[0]: must be an object",
        id="refuses a toleration that is not an object",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"podTemplate": {"spec": {"imagePullSecrets": [{}]}}}}}),
        "imagePullSecrets[0].name: is required",
        id="refuses a pull secret without name",
    ),
    pytest.param(
        _solver({"http01": {"ingress": {"podTemplate": {"spec": {"affinity": {"x": {1, 2}}}}}}}),
        "must be plain JSON",
        id="refuses values that are not JSON",
    ),
    pytest.param(
        _solver(
            {
                "selector": {"dnsZones": ["*.example.com"]},
                "dns01": {"rfc2136": {"nameserver": "ns"}},
            }
        ),
        "selector.dnsZones[0]",
        id="refuses a wildcard zone",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "2001:db8::53"}}}),
        "IPv6 address in brackets",
        id="refuses an unbracketed IPv6 nameserver",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "ns:70000"}}}),
        "must be host or host:port",
        id="refuses a nameserver port out of range",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "ns", "tsigKeyName": "k"}}}),
        "tsigKeyName and tsigSecretSecretRef go together",
        id="refuses a TSIG key name without secret",
    ),
    pytest.param(
        _solver(
            {
                "dns01": {
                    "rfc2136": {
                        "nameserver": "ns",
                        "tsigKeyName": "k",
                        "tsigSecretSecretRef": {"name": "t", "key": "s"},
                    }
                }
            }
        ),
        "tsigAlgorithm: is required with a TSIG key",
        id="refuses a TSIG key without algorithm",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "ns", "tsigAlgorithm": "HMACSHA3"}}}),
        "tsigAlgorithm: must be one of HMACMD5, HMACSHA1, HMACSHA256, HMACSHA512",
        id="refuses an unknown TSIG algorithm",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "ns", "protocol": "tcp"}}}),
        "spec.acme.solvers[0].dns01.rfc2136.protocol: must be one of UDP, TCP; got 'tcp'",
        id="refuses a lower-case protocol (case-sensitive, as in cert-manager)",
    ),
    pytest.param(
        _solver({"dns01": {"rfc2136": {"nameserver": "ns"}, "cnameStrategy": "Always"}}),
        "spec.acme.solvers[0].dns01.cnameStrategy: must be one of None, Follow",
        id="refuses an unknown cnameStrategy",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD_ISSUERS)
def test_refuses_invalid_issuers(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        acme(**changes)
    assert caught.value.reason == "InvalidSpec"
    assert message in caught.value.message


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="refuses a spec without acme"),
        pytest.param({"acme": None}, id="refuses a null acme block"),
        pytest.param({"ca": {"secretName": "x"}}, id="refuses a cert-manager CA issuer"),
    ],
)
def test_refuses_an_issuer_without_acme(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match=r"spec\.acme: is required"):
        AcmeIssuerSpec.from_body(spec)


def test_a_ca_bundle_may_be_wrapped_base64() -> None:
    wrapped = base64.encodebytes(ROOT_PEM).decode()  # 76-column lines, as `base64` prints
    assert acme(caBundle=wrapped).ca_bundle == ROOT_PEM


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {"server": "https://other.example/dir"}, id="another server is another account"
        ),
        pytest.param({"email": "new@example.com"}, id="another email updates the account"),
        pytest.param(
            {"privateKeySecretRef": {"name": "other"}}, id="another key Secret is another account"
        ),
        pytest.param(
            {"privateKeySecretRef": {"name": "account", "key": "k"}},
            id="another key entry is another account",
        ),
        pytest.param(
            {"externalAccountBinding": {"keyID": "kid", "keySecretRef": {"name": "e", "key": "k"}}},
            id="an EAB key ID binds another account",
        ),
    ],
)
def test_account_hash_changes(changes: dict[str, Any]) -> None:
    assert acme(**changes).account_hash() != acme().account_hash()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"solvers": []}, id="solvers do not touch the account"),
        pytest.param({"profile": "shortlived"}, id="the profile does not touch the account"),
        pytest.param({"caBundle": ROOT_B64}, id="the trust bundle does not touch the account"),
        pytest.param(
            {"privateKeySecretRef": {"name": "account", "key": "tls.key"}},
            id="spelling out the default key does not",
        ),
    ],
)
def test_account_hash_ignores(changes: dict[str, Any]) -> None:
    assert acme(**changes).account_hash() == acme().account_hash()
