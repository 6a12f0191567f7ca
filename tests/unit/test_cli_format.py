"""What ``acmebridge status`` and ``acmebridge inspect secret`` say, from plain objects.

The PEM vectors are tests/fixtures' PKI: leaf.pem (ECDSA P-256, every SAN kind) signed by
intermediate.pem, signed by root.pem, valid 2024-2124; leaf-key.pem is the leaf's key.
"""

from __future__ import annotations

import argparse
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmebridge import cli, secretreport, statusreport
from acmebridge.__main__ import main
from acmebridge.domain.reasons import Reason

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
UID = "0b5e3c1a-0000-4000-8000-000000000001"


def pem(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cond(type_: str, status: str, reason: str, message: str = "", gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": "2026-06-01T11:00:00Z",
    }


def certificate(*conditions: dict[str, Any], generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "uid": UID, "generation": generation},
        "spec": {
            "secretName": "web-tls",
            "issuerRef": {"name": "corp", "kind": "ClusterIssuer"},
            "commonName": "web.example.test",
            "dnsNames": ["web.example.test", "www.example.test"],
            "ipAddresses": ["192.0.2.10", "2001:db8::10"],
            "uris": ["spiffe://example.test/ns/shop/sa/web"],
            "emailAddresses": ["ops@example.test"],
        },
        "status": {"conditions": list(conditions), **status},
    }


def event(
    reason: str, message: str, *, type_: str = "Warning", count: int = 1, at: str, uid: str = UID
) -> dict[str, Any]:
    return {
        "involvedObject": {"uid": uid, "kind": "Certificate", "name": "web"},
        "type": type_,
        "reason": reason,
        "message": message,
        "count": count,
        "lastTimestamp": at,
    }


# -- status ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert", "ready"),
    [
        pytest.param(certificate(cond("Ready", "True", "Ready")), True, id="Ready=True is ready"),
        pytest.param(
            certificate(cond("Ready", "False", "IssuerNotFound")), False, id="Ready=False is not"
        ),
        pytest.param(certificate(), False, id="no condition yet is not ready"),
        pytest.param(
            certificate(cond("Ready", "True", "Ready", gen=1), generation=2),
            False,
            id="Ready for an older generation is not ready: the spec changed",
        ),
    ],
)
def test_is_ready(cert: dict[str, Any], ready: bool) -> None:
    assert statusreport.is_ready(cert) is ready


@pytest.mark.parametrize(
    ("cert", "events", "expected"),
    [
        pytest.param(
            certificate(),
            [],
            ["no Ready condition yet: is the operator running and watching this namespace?"],
            id="nothing written yet points at the operator",
        ),
        pytest.param(
            certificate(cond("Ready", "False", "IssuerNotFound", "Issuer 'corp' does not exist")),
            [],
            ["Ready=False IssuerNotFound: Issuer 'corp' does not exist"],
            id="the Ready condition says why",
        ),
        pytest.param(
            certificate(
                cond("Issuing", "True", "Waiting", "web.example.test: self check: HTTP 404"),
                order={
                    "url": "https://ca.test/order/1",
                    "state": "pending",
                    "authorizations": [
                        {
                            "identifier": "web.example.test",
                            "state": "pending",
                            "challenge": {"type": "http-01", "state": "pending"},
                        }
                    ],
                },
            ),
            [],
            [
                "Issuing=True Waiting: web.example.test: self check: HTTP 404",
                "ACME order https://ca.test/order/1 is pending",
                "  web.example.test: http-01 pending",
            ],
            id="a first issuance says where its order stands, not that the operator is missing",
        ),
        pytest.param(
            certificate(
                cond("Ready", "False", "Failed", "attempt 2 failed"),
                cond("Issuing", "False", "Failed", "retrying at 2026-06-01T12:05:00Z"),
                failedIssuanceAttempts=2,
                lastFailureTime="2026-06-01T11:59:00Z",
            ),
            [
                event("Failed", "attempt 1 failed", at="2026-06-01T11:50:00Z"),
                event("Issuing", "Issuing certificate", type_="Normal", at="2026-06-01T11:58:00Z"),
                event("Failed", "attempt 2 failed", at="2026-06-01T11:59:00Z"),
                event("Failed", "someone else's", at="2026-06-01T11:59:30Z", uid="other"),
            ],
            [
                "Ready=False Failed: attempt 2 failed",
                "Issuing=False Failed: retrying at 2026-06-01T12:05:00Z",
                "2 failed issuance attempt(s), the last at 2026-06-01T11:59:00Z",
                "event Failed: attempt 1 failed",
                "event Failed: attempt 2 failed",
            ],
            id="failures, and this certificate's Warning events oldest first",
        ),
        pytest.param(
            certificate(cond("Ready", "False", "SecretConflict", "Secret 'web-tls' exists")),
            [
                event("SecretConflict", f"conflict {i}", at=f"2026-06-01T11:5{i}:00Z")
                for i in range(5)
            ]
            + [event("SecretConflict", "repeated", count=7, at="2026-06-01T11:59:59Z")],
            [
                "Ready=False SecretConflict: Secret 'web-tls' exists",
                "event SecretConflict: conflict 3",
                "event SecretConflict: conflict 4",
                "event SecretConflict (x7): repeated",
            ],
            id="the three newest Warning events, with how often they happened",
        ),
        pytest.param(
            certificate(cond("Ready", "True", "Ready", gen=3), generation=4),
            [],
            [
                "the spec changed (generation 4) and the operator has not acted on it yet "
                "(Ready is for generation 3)"
            ],
            id="a spec the operator has not seen yet",
        ),
    ],
)
def test_why_not_ready(
    cert: dict[str, Any], events: list[dict[str, Any]], expected: list[str]
) -> None:
    assert statusreport.why_not_ready(cert, events) == expected


def test_the_status_table_aligns_columns_and_explains_what_is_not_ready() -> None:
    ready = certificate(
        cond("Ready", "True", "Ready"),
        notAfter="2026-09-01T00:00:00Z",
        renewalTime="2026-08-01T00:00:00Z",
    )
    broken = certificate(cond("Ready", "False", "IssuerNotFound", "Issuer 'x' does not exist"))
    broken["metadata"] = {**broken["metadata"], "name": "api", "namespace": "payments-prod"}
    rows = [statusreport.certificate_row(c, []) for c in (ready, broken)]
    assert rows[0].problems == ()
    text = statusreport.status_table(rows, show_namespace=True)
    assert text.splitlines() == [
        "NAMESPACE      NAME  READY  REASON          SECRET   ISSUER              "
        "NOT AFTER             RENEWAL",
        "shop           web   True   Ready           web-tls  ClusterIssuer/corp  "
        "2026-09-01T00:00:00Z  2026-08-01T00:00:00Z",
        "payments-prod  api   False  IssuerNotFound  web-tls  ClusterIssuer/corp  -"
        "                     -",
        "",
        "Certificate payments-prod/api is not ready:",
        "  Ready=False IssuerNotFound: Issuer 'x' does not exist",
    ]
    assert (
        statusreport.status_table(rows[:1], show_namespace=False)
        .splitlines()[0]
        .startswith("NAME  READY")
    )


def test_a_status_row_as_json() -> None:
    row = statusreport.certificate_row(certificate(cond("Ready", "False", "Failed", "no")), [])
    assert row.to_json() == {
        "namespace": "shop",
        "name": "web",
        "ready": "False",
        "reason": "Failed",
        "secretName": "web-tls",
        "issuer": "ClusterIssuer/corp",
        "notAfter": None,
        "renewalTime": None,
        "problems": ["Ready=False Failed: no"],
    }


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        pytest.param(timedelta(0), "0s", id="nothing"),
        pytest.param(timedelta(seconds=59), "59s", id="seconds"),
        pytest.param(timedelta(days=89, hours=23, minutes=59), "89d 23h", id="the two largest"),
        pytest.param(timedelta(days=2, seconds=5), "2d 5s", id="zero units are skipped"),
        pytest.param(timedelta(seconds=-5), "0s", id="negative is zero"),
    ],
)
def test_relative(delta: timedelta, text: str) -> None:
    assert secretreport.relative(delta) == text


# -- inspect secret --------------------------------------------------------------------------


def tls_secret(
    *,
    chain: bytes | None = None,
    key: bytes | None = None,
    ca: bytes | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    data = {
        "tls.crt": b64(pem("leaf.pem") + pem("intermediate.pem") if chain is None else chain),
        "tls.key": b64(pem("leaf-key.pem") if key is None else key),
        "ca.crt": b64(pem("root.pem") if ca is None else ca),
    }
    return {
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "web-tls",
            "namespace": "shop",
            "annotations": {
                "acmebridge.io/certificate-name": "web",
                "acmebridge.io/issuer-name": "corp",
                "acmebridge.io/issuer-kind": "ClusterIssuer",
            }
            if annotations is None
            else annotations,
        },
        "data": {k: v for k, v in data.items() if v},
    }


def other_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def failed(report: secretreport.InspectReport) -> dict[str, str]:
    return {c.what: c.detail for c in report.checks if not c.ok}


def test_a_good_secret_passes_every_check_and_shows_what_it_holds() -> None:
    ready = certificate(cond("Ready", "True", "Ready"), notAfter="2124-01-01T00:00:00Z")
    report = secretreport.inspect_tls_secret(tls_secret(), ready, now=NOW)
    assert failed(report) == {}
    assert report.ok
    assert [c.what for c in report.checks] == [
        "validity",
        "chain",
        "ca.crt",
        "tls.key",
        "names",
        "key type",
        "issuer",
        "status",
    ]
    fields = dict(report.fields)
    assert fields["DNS names"] == "web.example.test, www.example.test"
    assert fields["IP addresses"] == "192.0.2.10, 2001:db8::10"
    assert fields["URIs"] == "spiffe://example.test/ns/shop/sa/web"
    assert fields["Emails"] == "ops@example.test"
    assert fields["Subject"] == "'CN=web.example.test,O=acmebridge tests'"
    assert fields["Key"] == "ECDSA 256"
    assert fields["Chain"] == "2 certificate(s) in tls.crt"
    assert fields["ca.crt"] == "'CN=acmebridge Test Root CA,O=acmebridge tests'"
    assert fields["Serial"] == "1a2b3c4d5e6f"
    assert len(fields["SHA-256"].split(":")) == 32
    text = report.text()
    assert "[ok] tls.key: matches the certificate" in text
    assert "valid, expires in" in text
    assert "PRIVATE KEY" not in text
    assert pem("leaf-key.pem").decode().splitlines()[1] not in text


@pytest.mark.parametrize(
    ("secret", "cert", "now", "expected"),
    [
        pytest.param(
            tls_secret(key=other_key()),
            None,
            NOW,
            {
                "tls.key": "does NOT match the certificate's public key",
                "Certificate": "Certificate 'web' does not exist",
            },
            id="a key that is not the certificate's, and a Certificate that is gone",
        ),
        pytest.param(
            tls_secret(),
            certificate(),
            datetime(2124, 6, 1, tzinfo=UTC),
            {"validity": "expired 152d ago"},
            id="an expired certificate",
        ),
        pytest.param(
            tls_secret(),
            certificate(),
            datetime(2023, 12, 31, tzinfo=UTC),
            {"validity": "not valid yet: valid from 2024-01-01T00:00:00Z"},
            id="a certificate not valid yet",
        ),
        pytest.param(
            tls_secret(chain=pem("leaf.pem") + pem("root.pem")),
            certificate(),
            NOW,
            {
                "chain": "certificate 1 in tls.crt is not signed by the next one: the chain is "
                "out of order or incomplete",
            },
            id="a chain without its intermediate",
        ),
        pytest.param(
            tls_secret(ca=pem("impostor-root.pem")),
            certificate(),
            NOW,
            {
                "ca.crt": "did not sign the top of the chain ('CN=acmebridge Test Root CA,"
                "O=acmebridge tests')"
            },
            id="a ca.crt with the root's name but another key",
        ),
        pytest.param(
            tls_secret(
                annotations={
                    "acmebridge.io/certificate-name": "web",
                    "acmebridge.io/issuer-name": "old",
                    "acmebridge.io/issuer-kind": "Issuer",
                }
            ),
            {
                **certificate(cond("Ready", "True", "Ready"), notAfter="2026-09-01T00:00:00Z"),
                "spec": {
                    "secretName": "web-tls",
                    "issuerRef": {"name": "corp", "kind": "ClusterIssuer"},
                    "dnsNames": ["web.example.test", "api.example.test"],
                    "privateKey": {"algorithm": "RSA", "size": 2048},
                },
            },
            NOW,
            {
                "names": "certificate lacks dnsNames [api.example.test]; has extra dnsNames "
                "[www.example.test]; has extra ipAddresses [192.0.2.10, 2001:db8::10]; has extra "
                "uris [spiffe://example.test/ns/shop/sa/web]; has extra emailAddresses "
                "[ops@example.test]",
                "key type": "ECDSA 256, the Certificate asks for RSA 2048",
                "issuer": "issued by Issuer/old, the Certificate names ClusterIssuer/corp",
                "status": "the Certificate's status.notAfter is 2026-09-01T00:00:00Z: the "
                "operator has not yet recorded this certificate",
            },
            id="a Secret that no longer matches its edited Certificate",
        ),
    ],
)
def test_inspect_finds_what_is_wrong(
    secret: dict[str, Any], cert: dict[str, Any] | None, now: datetime, expected: dict[str, str]
) -> None:
    report = secretreport.inspect_tls_secret(secret, cert, now=now)
    assert failed(report) == expected
    assert not report.ok
    for what in expected:
        assert f"[FAIL] {what}: " in report.text()


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(
            {**tls_secret(), "data": {"tls.key": b64(pem("leaf-key.pem"))}},
            {"tls.crt": "the Secret has no tls.crt"},
            id="no certificate",
        ),
        pytest.param(
            {**tls_secret(), "data": {"tls.crt": b64(b"not a certificate")}},
            {
                "tls.crt": "cannot be parsed: no PEM certificate found "
                "(expected '-----BEGIN CERTIFICATE-----')"
            },
            id="a tls.crt that is not PEM",
        ),
        pytest.param(
            {**tls_secret(), "data": {"tls.crt": "%%%"}},
            {"data": "Secret data tls.crt is not valid base64"},
            id="data that is not base64",
        ),
    ],
)
def test_inspect_of_a_secret_without_a_usable_certificate(
    secret: dict[str, Any], expected: dict[str, str]
) -> None:
    report = secretreport.inspect_tls_secret(secret, None, now=NOW)
    assert failed(report) == expected


def test_a_secret_acmebridge_does_not_manage_is_only_decoded() -> None:
    report = secretreport.inspect_tls_secret(tls_secret(annotations={}), None, now=NOW)
    assert report.ok
    assert dict(report.fields)["Certificate"] == "none (the Secret is not managed by acmebridge)"
    assert {c.what for c in report.checks} == {"validity", "chain", "ca.crt", "tls.key"}


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        pytest.param(
            {"annotations": {"acmebridge.io/certificate-name": "a" * 80}},
            "a" * 80,
            id="the annotation holds the full name",
        ),
        pytest.param(
            {"labels": {"acmebridge.io/certificate-name": "web"}}, "web", id="else the label"
        ),
        pytest.param({}, None, id="neither: not ours"),
    ],
)
def test_which_certificate_a_secret_belongs_to(metadata: dict[str, Any], name: str | None) -> None:
    assert secretreport.certificate_name_of({"metadata": metadata}) == name


# -- the command line ------------------------------------------------------------------------


def test_renew_sets_the_reason_the_operator_looks_for() -> None:
    assert cli.MANUAL_REASON == Reason.MANUALLY_TRIGGERED == "ManuallyTriggered"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["status", "-n", "a", "-A"], id="a namespace and all namespaces"),
        pytest.param(["status", "-o", "yaml"], id="an output format that does not exist"),
        pytest.param(["renew"], id="renew without a name"),
        pytest.param(["inspect", "configmap", "x"], id="inspect something other than a Secret"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_missing_kubeconfig_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--kubeconfig", str(tmp_path / "absent")]) == 2
    assert "cannot load kubeconfig" in capsys.readouterr().err


def test_a_name_needs_a_namespace() -> None:
    args = argparse.Namespace(all_namespaces=True, namespace=None, name="web")
    with pytest.raises(cli.CliError, match="needs a namespace"):
        cli.status_scope(args, "default")
