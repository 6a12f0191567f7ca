"""A catalogue of malformed and hostile input, as data: what a user (or an attacker with a user's
rights) can send, and what acmebridge must answer.

Each ``Case`` is one object that must not be acted upon. Its outcome is one of two:

- ``refused``: the API server refuses it when applied (schema, CEL, strict field validation), with
  a message containing ``fragment``. ``parser_refuses`` says whether the operator's own parser
  (``domain.spec``) refuses it too, for a cluster whose CRD is older or was bypassed.
- ``not-ready``: it is stored, and the operator answers with ``Ready=False``, reason ``reason``, a
  message containing ``fragment``, and a Warning Event with reason ``event_reason``, while it
  keeps serving every other object and writes no Secret it does not own.

``setup`` lists objects the case needs to exist first (a foreign Secret, a broken Issuer).
Manifests carry no namespace: the lab test applies the whole catalogue in one namespace. Strings
in ``PLACEHOLDERS`` stand for values only known in the lab (Pebble's URL and CA); ``materialise``
replaces them.

The cases follow where cert-manager went wrong: a status field or a reference that points the
controller at a Secret it should not touch, or at credentials it should not lend
(GHSA-8rvj-mm4h-c258), Secrets overwritten or emptied, slow parses of crafted PEM
(GHSA-r4pg-vg54-wxx4), and a user-supplied ACME URL that makes the controller fetch arbitrary
addresses.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Manifest = dict[str, Any]

API_VERSION = "acmebridge.io/v1alpha1"

# Stand-ins for lab values, replaced by ``materialise``.
SERVER = "<pebble-directory-url>"
TLS_CA = "<pebble-tls-ca-base64>"
"""The CA of Pebble's HTTPS certificate: the right caBundle."""
ISSUING_ROOT = "<pebble-root-base64>"
"""Pebble's issuing root: a real CA, but not the one that signed Pebble's HTTPS certificate."""
TLS_CA_X151 = "<pebble-tls-ca-151-times-base64>"
"""The right CA, repeated 151 times: one more certificate than a bundle may hold."""
PLACEHOLDERS = (SERVER, TLS_CA, ISSUING_ROOT, TLS_CA_X151)

UNREACHABLE = "https://127.0.0.1:9/dir"
DOMAIN = "hostile.lab.test"

# The healthy objects every runtime case lives next to.
GOOD_ISSUER = "good"
GOOD_ACCOUNT_SECRET = "good-account"
CONTROL = "control"
CONTROL_SECRET = "control-tls"
LATE_CONTROL = "control-after"

PRIVATE_KEY_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgq0zLsmXwFXSh2Sii\n"
    b"-----END PRIVATE KEY-----\n"
)
"""A private-key PEM block (truncated): must never be echoed back in a message."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def certificate(name: str, **spec: Any) -> Manifest:
    body: dict[str, Any] = {
        "secretName": f"{name}-tls",
        "issuerRef": {"name": GOOD_ISSUER},
        "dnsNames": [f"{name}.{DOMAIN}"],
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": body,
    }


def issuer(name: str, **acme: Any) -> Manifest:
    body: dict[str, Any] = {
        "server": SERVER,
        "caBundle": TLS_CA,
        "email": "pki@lab.test",
        "privateKeySecretRef": {"name": f"{name}-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "lab"}}}],
    }
    body.update(acme)
    return {
        "apiVersion": API_VERSION,
        "kind": "Issuer",
        "metadata": {"name": name},
        "spec": {"acme": body},
    }


def secret(
    name: str,
    data: Mapping[str, bytes],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    type_: str = "Opaque",
) -> Manifest:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": type_,
        "data": {k: _b64(v) for k, v in data.items()},
    }


@dataclass(frozen=True)
class Case:
    """One hostile object and the answer it must get (see the module docstring)."""

    id: str
    manifest: Manifest
    outcome: Literal["refused", "not-ready"]
    fragment: str
    reason: str | None = None
    event_reason: str | None = None
    parser_refuses: bool = True
    setup: tuple[Manifest, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def expected_event_reason(self) -> str | None:
        return self.event_reason or self.reason


def refused(id: str, manifest: Manifest, fragment: str, *, parser_refuses: bool = True) -> Case:
    return Case(id, manifest, "refused", fragment, parser_refuses=parser_refuses)


def not_ready(
    id: str,
    manifest: Manifest,
    reason: str,
    fragment: str,
    *,
    event_reason: str | None = None,
    setup: tuple[Manifest, ...] = (),
) -> Case:
    return Case(id, manifest, "not-ready", fragment, reason, event_reason, setup=setup)


def _pod_template(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"http01": {"ingress": {"ingressClassName": "lab", "podTemplate": {"spec": spec}}}}]


# --- refused when applied --------------------------------------------------------------------

REFUSED = [
    refused(
        "a Certificate name longer than 253 characters is refused",
        certificate("c" * 254),
        "metadata.name: Invalid value",
        parser_refuses=False,  # names are the API server's to check, not the spec parser's
    ),
    refused(
        "a Certificate name that is not a DNS subdomain is refused",
        certificate("Web_TLS"),
        "a lowercase RFC 1123 subdomain",
        parser_refuses=False,
    ),
    refused(
        "a secretName longer than 253 characters is refused",
        certificate("long-secret", secretName="s" * 254),
        "spec.secretName: Too long",
    ),
    refused(
        "a secretName that walks a path is refused",
        certificate("path-secret", secretName="../kube-system/admin-token"),
        "secretName must be a valid Secret name",
    ),
    refused(
        "an issuerRef kind that is neither Issuer nor ClusterIssuer is refused",
        certificate("kind-secret", issuerRef={"name": "good", "kind": "Secret"}),
        'Unsupported value: "Secret"',
    ),
    refused(
        "a DNS name in Unicode rather than its xn-- form is refused",
        certificate("idn", dnsNames=["bücher.hostile.lab.test"]),
        "is not a valid DNS name",
    ),
    refused(
        "a DNS label longer than 63 characters is refused",
        certificate("long-label", dnsNames=["l" * 64 + ".hostile.lab.test"]),
        "is not a valid DNS name",
    ),
    refused(
        "a DNS name longer than 253 characters is refused",
        certificate("long-name", dnsNames=[("n" * 62 + ".") * 4 + "test"]),
        "Too long: may not be more than 253 bytes",
    ),
    refused(
        "a DNS name with a NUL byte is refused",
        certificate("nul-name", dnsNames=["web\x00.hostile.lab.test"]),
        "is not a valid DNS name",
    ),
    refused(
        "an IPv4 address among dnsNames is refused",
        certificate("ip-in-dns", dnsNames=["10.0.0.7"]),
        "is an IP address, not a DNS name",
    ),
    refused(
        "an IPv6 address among dnsNames is refused",
        certificate("ip6-in-dns", dnsNames=["2001:db8::7"]),
        "is an IP address, not a DNS name",
    ),
    refused(
        "more than 100 names on one certificate are refused",
        certificate("many-names", dnsNames=[f"n{i}.{DOMAIN}" for i in range(101)]),
        "must have at most 100 items",
    ),
    refused(
        "a duration under five minutes is refused",
        certificate("short", duration="4m59s"),
        "duration must be at least 5m",
    ),
    refused(
        "a duration beyond Go's range is refused",
        certificate("forever", duration="9999999999h"),
        "spec.duration",
    ),
    refused(
        "renewBefore as long as duration is refused",
        certificate("renew-always", duration="1h", renewBefore="1h"),
        "renewBefore must be shorter than duration",
    ),
    refused(
        "an unknown key algorithm is refused",
        certificate("dsa", privateKey={"algorithm": "DSA"}),
        'Unsupported value: "DSA"',
    ),
    refused(
        "an RSA key of 16384 bits (minutes of CPU to generate) is refused",
        certificate("rsa-huge", privateKey={"algorithm": "RSA", "size": 16384}),
        "RSA keys must be 2048, 3072 or 4096 bits",
    ),
    refused(
        "an ECDSA key with an RSA size is refused",
        certificate("ec-2048", privateKey={"algorithm": "ECDSA", "size": 2048}),
        "ECDSA size is the curve",
    ),
    refused(
        "a secretTemplate that forges the owner UID annotation is refused",
        certificate(
            "forge-uid",
            secretTemplate={"annotations": {"acmebridge.io/certificate-uid": "someone-else"}},
        ),
        "may not use the acmebridge.io/ prefix",
    ),
    refused(
        "a secretTemplate that forges the pending-key label is refused",
        certificate(
            "forge-pending", secretTemplate={"labels": {"acmebridge.io/pending-key-for": "x"}}
        ),
        "may not use the acmebridge.io/ prefix",
    ),
    refused(
        "a plain http ACME server is refused",
        issuer("plain-http", server="http://127.0.0.1:14000/dir"),
        "server must be the https:// URL of the ACME directory",
    ),
    refused(
        "an ACME server URL that parsers read two ways (backslash before @) is refused",
        issuer("backslash", server="https://evil.example\\@127.0.0.1:14000/dir"),
        "server must be the https:// URL of the ACME directory",
    ),
    refused(
        "a file: URL as ACME server is refused",
        issuer("file-url", server="file:///var/run/secrets/kubernetes.io/serviceaccount/token"),
        "server must be the https:// URL of the ACME directory",
    ),
    refused(
        "a caBundle given as PEM text rather than base64 is refused",
        issuer("pem-text", caBundle="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
        "must be of type byte",
    ),
    refused(
        "a caBundle larger than 1 MiB is refused",
        issuer("huge-bundle", caBundle="QUFB" * 262_145),
        "Too long: may not be more than 1048576 bytes",
    ),
    refused(
        "an account key reference into another namespace is refused",
        issuer("other-ns-key", privateKeySecretRef={"name": "x", "namespace": "kube-system"}),
        'unknown field "spec.acme.privateKeySecretRef.namespace"',
        parser_refuses=False,  # the parser never reads a namespace there: it cannot follow one
    ),
    refused(
        "an external account binding Secret in another namespace is refused",
        issuer(
            "other-ns-eab",
            externalAccountBinding={
                "keyID": "kid-1",
                "keySecretRef": {"name": "eab", "key": "secret", "namespace": "kube-system"},
            },
        ),
        'unknown field "spec.acme.externalAccountBinding.keySecretRef.namespace"',
        parser_refuses=False,
    ),
    refused(
        "a solver Pod on the host network is refused",
        issuer("host-net", solvers=_pod_template({"hostNetwork": True})),
        'unknown field "spec.acme.solvers[0].http01.ingress.podTemplate.spec.hostNetwork"',
    ),
    refused(
        "a solver Pod with containers of its own is refused",
        issuer("own-image", solvers=_pod_template({"containers": [{"name": "x", "image": "e"}]})),
        'unknown field "spec.acme.solvers[0].http01.ingress.podTemplate.spec.containers"',
    ),
    refused(
        "a solver Pod running as root is refused",
        issuer("as-root", solvers=_pod_template({"securityContext": {"runAsUser": 0}})),
        'unknown field "spec.acme.solvers[0].http01.ingress.podTemplate.spec.securityContext"',
    ),
    refused(
        "an email address carrying a mail header is refused",
        issuer("header-email", email="pki@lab.test\nBcc: all@lab.test"),
        "email must be a plain address",
    ),
]


# --- stored, and answered with Ready=False ---------------------------------------------------

APP_SECRET = secret("app-config", {"password": b"correct horse battery staple"})
STALE_SECRET = secret(
    "stale-tls",
    {"tls.crt": b"old", "tls.key": b"old"},
    labels={"acmebridge.io/certificate-name": "stale"},
    annotations={"acmebridge.io/certificate-uid": "00000000-0000-0000-0000-000000000000"},
    type_="kubernetes.io/tls",
)
UNSTAMPED_SECRET = secret(
    "unstamped-tls",
    {"tls.crt": b"restored", "tls.key": b"restored"},
    labels={"acmebridge.io/certificate-name": "unstamped"},
    type_="kubernetes.io/tls",
)
PENDING_LOOKALIKE = secret(
    "pending-lookalike",
    {"tls.key": b"not really"},
    labels={"acmebridge.io/pending-key-for": "00000000-0000-0000-0000-000000000000"},
)
EAB_WRONG_KEY = secret("eab-wrong-key", {"other": b"x"})
EAB_NOT_BASE64URL = secret("eab-not-base64url", {"secret": b"this is not base64url!"})
JUNK_ACCOUNT_KEY = secret("junk-account-key", {"tls.key": b"not a private key"})
EAB = {"keyID": "kid-1", "keySecretRef": {"name": "eab-absent", "key": "secret"}}


def _eab(secret_name: str, key: str = "secret") -> dict[str, Any]:
    return {"keyID": "kid-1", "keySecretRef": {"name": secret_name, "key": key}}


NOT_READY = [
    # References to things that are not there, or not usable.
    not_ready(
        "a Certificate of an Issuer that does not exist is not ready",
        certificate("ghost", issuerRef={"name": "missing"}),
        "IssuerNotFound",
        "Issuer 'missing' does not exist",
    ),
    not_ready(
        "a Certificate of a ClusterIssuer that does not exist is not ready",
        certificate(
            "ghost-cluster", issuerRef={"name": "hostile-missing", "kind": "ClusterIssuer"}
        ),
        "IssuerNotFound",
        "ClusterIssuer 'hostile-missing' does not exist",
    ),
    not_ready(
        "an issuerRef name that walks a path is not an object name",
        certificate("path-issuer", issuerRef={"name": "../kube-system/x"}),
        "InvalidSpec",
        "spec.issuerRef.name: '../kube-system/x' is not a valid object name",
    ),
    not_ready(
        "a Certificate of an Issuer that is not ready says why",
        certificate("on-broken", issuerRef={"name": "broken-upstream"}),
        "IssuerNotReady",
        "is not ready: ServerNotAllowed",
        setup=(issuer("broken-upstream", server=UNREACHABLE),),
    ),
    # Solvers.
    not_ready(
        "a wildcard with only an HTTP-01 solver is not ready",
        certificate("wild", dnsNames=[f"*.wild.{DOMAIN}"]),
        "NoSolver",
        "(a wildcard needs a dns01 solver",
        event_reason="Failed",
    ),
    not_ready(
        "a cluster-internal name is refused before any order, with a name that would work",
        certificate("internal", dnsNames=["web.shop.svc.cluster.local"]),
        "NameNotValidatable",
        "'web.shop.svc.cluster.local' is a cluster-internal name",
        event_reason="Failed",
    ),
    not_ready(
        "a solver selector that matches nothing is reported",
        certificate("unmatched", issuerRef={"name": "zoned"}),
        "NoSolver",
        f"no solver of the issuer matches unmatched.{DOMAIN}",
        event_reason="Failed",
        setup=(
            issuer(
                "zoned",
                solvers=[
                    {
                        "selector": {"dnsZones": ["elsewhere.example"]},
                        "http01": {"ingress": {"ingressClassName": "lab"}},
                    }
                ],
            ),
        ),
    ),
    not_ready(
        "an Issuer without solvers cannot serve a Certificate",
        certificate("solverless", issuerRef={"name": "no-solvers"}),
        "NoSolver",
        f"no solver of the issuer matches solverless.{DOMAIN}",
        event_reason="Failed",
        setup=(issuer("no-solvers", solvers=[]),),
    ),
    not_ready(
        "an http01 solver that would edit an existing Ingress is refused",
        certificate("edit-ingress", issuerRef={"name": "named-ingress"}),
        "SolverNotSupported",
        "http01.ingress.name (editing an existing Ingress) is not supported",
        event_reason="Failed",
        setup=(issuer("named-ingress", solvers=[{"http01": {"ingress": {"name": "shop"}}}]),),
    ),
    # Secrets that are not the Certificate's to write.
    not_ready(
        "a secretName naming an application's Secret is a conflict",
        certificate("grab-app", secretName="app-config"),
        "SecretConflict",
        "Secret 'app-config' exists and was not written by acmebridge",
        setup=(APP_SECRET,),
    ),
    not_ready(
        "a secretName used by another Certificate is a conflict",
        certificate("twin", secretName=CONTROL_SECRET),
        "SecretConflict",
        f"Secret '{CONTROL_SECRET}' belongs to Certificate '{CONTROL}'",
    ),
    not_ready(
        "a secretName naming an Issuer's ACME account key is a conflict",
        certificate("grab-account", secretName=GOOD_ACCOUNT_SECRET),
        "SecretConflict",
        f"Secret '{GOOD_ACCOUNT_SECRET}' holds the ACME account key of Issuer '{GOOD_ISSUER}'",
    ),
    not_ready(
        "a secretName naming a pending private key is a conflict",
        certificate("grab-pending", secretName="pending-lookalike"),
        "SecretConflict",
        "Secret 'pending-lookalike' holds a pending private key",
        setup=(PENDING_LOOKALIKE,),
    ),
    not_ready(
        "a Secret written for an earlier Certificate of the same name is not taken over",
        certificate("stale", secretName="stale-tls"),
        "SecretConflict",
        "was written for an earlier Certificate 'stale'",
        setup=(STALE_SECRET,),
    ),
    not_ready(
        "a Secret with the name label but no owner UID is not taken over",
        certificate("unstamped", secretName="unstamped-tls"),
        "SecretConflict",
        "has no acmebridge.io/certificate-uid annotation",
        setup=(UNSTAMPED_SECRET,),
    ),
    # Issuers: account key and external account binding.
    not_ready(
        "an Issuer that borrows a Certificate's private key as its account key is refused",
        issuer("borrow-key", privateKeySecretRef={"name": CONTROL_SECRET, "key": "tls.key"}),
        "SecretConflict",
        f"/{CONTROL_SECRET}' belongs to Certificate '{CONTROL}'; an Issuer cannot use",
    ),
    not_ready(
        "an Issuer that uses a Certificate's private key as its EAB key is refused",
        issuer("borrow-eab", externalAccountBinding=_eab(CONTROL_SECRET, "tls.key")),
        "SecretConflict",
        f"/{CONTROL_SECRET}' belongs to Certificate '{CONTROL}'; an Issuer cannot use",
    ),
    not_ready(
        "an Issuer whose EAB Secret is missing is not ready",
        issuer("eab-missing", externalAccountBinding=EAB),
        "EABSecretMissing",
        "external account binding Secret",
    ),
    not_ready(
        "an Issuer whose EAB Secret lacks the key is not ready",
        issuer("eab-no-key", externalAccountBinding=_eab("eab-wrong-key")),
        "SecretKeyMissing",
        "has no key 'secret'",
        setup=(EAB_WRONG_KEY,),
    ),
    not_ready(
        "an Issuer whose EAB key is not base64url is not ready",
        issuer("eab-garbage", externalAccountBinding=_eab("eab-not-base64url")),
        "InvalidEABKey",
        "is not an unpadded base64url MAC key",
        setup=(EAB_NOT_BASE64URL,),
    ),
    not_ready(
        "an Issuer whose account key Secret holds no key is not ready",
        issuer("junk-key", privateKeySecretRef={"name": "junk-account-key"}),
        "InvalidAccountKey",
        "is not an unencrypted PEM private key",
        setup=(JUNK_ACCOUNT_KEY,),
    ),
    not_ready(
        "an Issuer that may not generate its missing account key is not ready",
        issuer("no-key", disableAccountKeyGeneration=True),
        "AccountKeyMissing",
        "disableAccountKeyGeneration is set",
    ),
    # Issuers: trust and server.
    not_ready(
        "a caBundle that is base64 of something else than PEM is not ready",
        issuer("bundle-garbage", caBundle=_b64(b"not a certificate at all")),
        "InvalidSpec",
        "spec.acme.caBundle: must hold at least one PEM certificate",
    ),
    not_ready(
        "a caBundle holding a private key is refused without echoing it",
        issuer("bundle-private-key", caBundle=_b64(PRIVATE_KEY_PEM)),
        "InvalidSpec",
        "spec.acme.caBundle: must hold at least one PEM certificate",
    ),
    not_ready(
        "a caBundle whose certificate does not decode is not ready",
        issuer(
            "bundle-broken",
            caBundle=_b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        ),
        "InvalidSpec",
        "is not a valid X.509 certificate",
    ),
    not_ready(
        "a caBundle of more than 150 certificates is not ready",
        issuer("bundle-151", caBundle=TLS_CA_X151),
        "InvalidSpec",
        "more than 150 certificates",
    ),
    not_ready(
        "a caBundle that did not sign the server's certificate is reported",
        issuer("wrong-ca", caBundle=ISSUING_ROOT),
        "TLSError",
        "not trusted by spec.acme.caBundle",
    ),
    not_ready(
        "an ACME server outside the allow-list is refused",
        issuer("elsewhere", server=UNREACHABLE),
        "ServerNotAllowed",
        "is not in the operator's allow-list",
    ),
    not_ready(
        "an ACME server URL with a user name in front of the host is refused",
        issuer("userinfo", server="https://127.0.0.1:14000@127.0.0.1:9/dir"),
        "InvalidSpec",
        "must not carry a user name or password",
    ),
    not_ready(
        "a profile the server does not offer is reported",
        issuer("no-profile", profile="tlsserver"),
        "ProfileNotOffered",
        "profile 'tlsserver' is not offered",
    ),
    not_ready(
        "a solver selector zone with a wildcard is not ready",
        issuer(
            "wild-zone",
            solvers=[{"selector": {"dnsZones": ["*.example"]}, "http01": {"ingress": {}}}],
        ),
        "InvalidSpec",
        "spec.acme.solvers[0].selector.dnsZones[0]",
    ),
    not_ready(
        "an Ingress name that walks a path is not an object name",
        issuer("path-ingress", solvers=[{"http01": {"ingress": {"name": "../kube-system/x"}}}]),
        "InvalidSpec",
        "'../kube-system/x' is not a valid object name",
    ),
]

CATALOGUE = REFUSED + NOT_READY

# Valid names at their limits, which must simply work. Cut at a label's 63 characters the
# Issuer's "Issuer.<name>" ends in '-', and the Certificate's name ends in '-' there and in '.'
# at 200 characters, where the operator derives the names of its Events and pending keys.
LONG_ISSUER = "i" * 55 + "-" + "j" * 30
LONG_CERTIFICATE = "a" * 62 + "-" + "b" * 136 + "." + "c" * 53
AT_THE_LIMITS = [
    issuer(LONG_ISSUER),
    certificate(
        LONG_CERTIFICATE,
        issuerRef={"name": LONG_ISSUER},
        secretName="long-name-tls",
        dnsNames=[f"long-name.{DOMAIN}"],
    ),
]


def good_issuer() -> Manifest:
    return issuer(GOOD_ISSUER, privateKeySecretRef={"name": GOOD_ACCOUNT_SECRET})


def control_certificate(name: str = CONTROL) -> Manifest:
    return certificate(name, secretName=f"{name}-tls")


def materialise(manifest: Manifest, values: Mapping[str, str]) -> Manifest:
    """A copy of ``manifest`` with every placeholder string replaced by its value."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node in PLACEHOLDERS:
            return values[node]
        return node

    result: Manifest = walk(copy.deepcopy(manifest))
    return result


def placeholder_values(
    *, server: str, tls_ca_pem: bytes, issuing_root_pem: bytes
) -> dict[str, str]:
    return {
        SERVER: server,
        TLS_CA: _b64(tls_ca_pem),
        ISSUING_ROOT: _b64(issuing_root_pem),
        TLS_CA_X151: _b64(tls_ca_pem.strip() + b"\n" + (tls_ca_pem.strip() + b"\n") * 150),
    }
