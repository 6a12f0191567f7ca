"""Renewal in the lab: on schedule, through ARI, on spec and Secret changes, and on request.

Short lifetimes come from an extra Pebble whose profile issues certificates valid for two minutes
(``tests.lab.pebbles``); ARI windows are moved with Pebble's management API. Every operator here
reads a ready Certificate's Secret again every 3 s (``--secret-check-interval``), which is how it
notices a deleted or edited Secret without the permission to watch Secrets.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acmebridge.adapters.acme_messages import ari_cert_id
from acmebridge.adapters.kube import Kube, core_path, ours_path
from acmebridge.domain.schedule import jitter_for
from tests.lab.conftest import acme_spec, b64_file, make_certificate, make_issuer
from tests.lab.operator_proc import ROOT, OperatorProcess
from tests.lab.pebbles import ExtraPebble, pebble_factory, set_renewal_info  # noqa: F401
from tests.lab.test_issuance import assert_chain_verifies_to, key_matches, load_chain, ready, sans
from tests.lab.waits import condition, describe_events, get_object, wait_for

pytestmark = pytest.mark.lab

GROUP, VERSION = "acmebridge.io", "v1alpha1"
# A ready Certificate's Secret is read again this often (seconds).
SECRET_CHECK = "--secret-check-interval=3"
ISSUE_TIMEOUT = 90


# -- reading Certificates, Events and Secrets (test_restart uses these too) ---------------------


def certificate(k: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = get_object(k.api, GROUP, VERSION, "certificates", namespace, name)
    assert obj is not None, f"Certificate {namespace}/{name} does not exist"
    return obj


def explain(k: Kube, obj: dict[str, Any] | None) -> str:
    """An object's status and Events, as `kubectl describe` would show them."""
    if obj is None:
        return "the object does not exist"
    return (
        f"status:\n{yaml.safe_dump(obj.get('status') or {})}events:\n{describe_events(k.api, obj)}"
    )


def wait_revision(
    k: Kube, namespace: str, name: str, revision: int, *, timeout: float = ISSUE_TIMEOUT
) -> dict[str, Any]:
    """Waits until the Certificate is Ready for its spec with at least ``revision`` issuances."""
    seen: list[dict[str, Any] | None] = [None]

    def met() -> dict[str, Any] | None:
        obj = seen[0] = get_object(k.api, GROUP, VERSION, "certificates", namespace, name)
        c = condition(obj, "Ready")
        if obj is None or c is None or c.get("status") != "True":
            return None
        current = c.get("observedGeneration") == obj["metadata"].get("generation")
        done = int((obj.get("status") or {}).get("revision") or 0) >= revision
        return obj if current and done else None

    return wait_for(
        met,
        timeout=timeout,
        interval=0.25,
        describe=lambda: (
            f"Certificate {namespace}/{name} Ready at revision {revision}\n" + explain(k, seen[0])
        ),
    )


def events(k: Kube, namespace: str, name: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The Certificate's Events (optionally of one reason), oldest first."""
    obj = certificate(k, namespace, name)
    found = [
        e
        for e in k.list(core_path("events", namespace))
        if (e.get("involvedObject") or {}).get("uid") == obj["metadata"]["uid"]
        and (reason is None or e.get("reason") == reason)
    ]
    return sorted(found, key=lambda e: e.get("firstTimestamp") or "")


def secret_of(k: Kube, namespace: str, name: str) -> dict[str, bytes]:
    s = k.get(core_path("secrets", namespace, name))
    assert s is not None, f"Secret {namespace}/{name} does not exist"
    return {key: base64.b64decode(v) for key, v in (s.get("data") or {}).items()}


def leaf_of(k: Kube, namespace: str, secret: str) -> x509.Certificate:
    return load_chain(secret_of(k, namespace, secret)["tls.crt"])[0]


def assert_secret_matches(
    k: Kube, namespace: str, secret: str, *, dns_names: list[str], root_pem: bytes
) -> x509.Certificate:
    """The Secret holds a chain to ``root_pem`` for exactly ``dns_names``, with its key."""
    data = secret_of(k, namespace, secret)
    chain = load_chain(data["tls.crt"])
    assert_chain_verifies_to(chain, x509.load_pem_x509_certificate(root_pem))
    assert sans(chain[0])[0] == set(dns_names)
    assert key_matches(chain[0], data["tls.key"]), "tls.key does not match tls.crt"
    return chain[0]


def when(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def pebble_issuer(k: Kube, namespace: str, pebble: ExtraPebble, *, ca: bool = True) -> str:
    """A ready Issuer for an extra Pebble (with its current root as issuingCABundle)."""
    spec: dict[str, Any] = {
        "server": pebble.directory_url,
        "caBundle": b64_file(str(pebble.tls_ca)),
        "email": "pki@lab.test",
        "privateKeySecretRef": {"name": "acme-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "lab"}}}],
    }
    if ca:
        spec["issuingCABundle"] = b64_file(str(pebble.root_path))
    make_issuer(k, namespace, "pebble", spec)
    ready(k, namespace, "pebble", plural="issuers")
    return "pebble"


def lab_issuer(lab: Any, k: Kube, namespace: str) -> str:
    """A ready Issuer for the lab's shared Pebble (certificates valid for 90 days)."""
    make_issuer(
        k, namespace, "pebble", acme_spec(lab, issuingCABundle=b64_file(lab.env["PEBBLE_ROOT"]))
    )
    ready(k, namespace, "pebble", plural="issuers")
    return "pebble"


def chosen_ari(obj: dict[str, Any]) -> dict[str, Any] | None:
    ari = (obj.get("status") or {}).get("renewalInfo")
    return ari if isinstance(ari, dict) else None


# -- on schedule --------------------------------------------------------------------------------


def test_renews_on_schedule_while_the_old_certificate_is_still_valid(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    pebble = pebble_factory(validity=120)
    operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = pebble_issuer(k, namespace, pebble)
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": issuer},
        dnsNames=["web.renew.lab.test"],
        renewBeforePercentage=80,
    )
    first = wait_revision(k, namespace, "web", 1)
    old = leaf_of(k, namespace, "web-tls")
    status = first["status"]
    renewal = when(status["renewalTime"])
    # Renewal is scheduled inside the lifetime: at 20% of it at the latest (80% left).
    lifetime = old.not_valid_after_utc - old.not_valid_before_utc
    assert (
        old.not_valid_before_utc
        <= renewal
        <= old.not_valid_before_utc + lifetime * 0.2 + (timedelta(seconds=1))
    ), status

    second = wait_revision(k, namespace, "web", 2, timeout=lifetime.total_seconds())
    seen_at = datetime.now(UTC)
    new = assert_secret_matches(
        k, namespace, "web-tls", dns_names=["web.renew.lab.test"], root_pem=pebble.root_pem()
    )
    assert new.serial_number != old.serial_number
    # The replacement was in place while the old certificate was still valid, and the renewal
    # started at the scheduled time, not before.
    assert seen_at < old.not_valid_after_utc, (seen_at, old.not_valid_after_utc)
    assert new.not_valid_before_utc >= renewal - timedelta(seconds=1), (new, renewal)
    renewed = events(k, namespace, "web", "Renewed")
    assert renewed, explain(k, second)
    assert when(renewed[0]["firstTimestamp"]) < old.not_valid_after_utc
    issuing = [e["message"] for e in events(k, namespace, "web", "Issuing")]
    assert any(status["renewalTime"] in m for m in issuing), issuing


# -- ARI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "earliest", "latest"),
    [
        pytest.param(
            timedelta(seconds=40),
            timedelta(seconds=44),
            timedelta(seconds=40),
            timedelta(seconds=47),
            id="a window the CA moves renews inside it",
        ),
        pytest.param(
            timedelta(minutes=-10),
            timedelta(minutes=-5),
            timedelta(seconds=30),
            timedelta(seconds=36),
            id="a window moved into the past renews once the storm guard's floor is reached",
        ),
    ],
)
def test_ari_window_moved_by_the_ca_renews_with_replaces(
    k: Kube,
    namespace: str,
    pebble_factory: Callable[..., ExtraPebble],  # noqa: F811
    operator_factory: Callable[..., OperatorProcess],
    start: timedelta,
    end: timedelta,
    earliest: timedelta,
    latest: timedelta,
) -> None:
    # 60 s certificates: old enough for the CA's window to matter within a test, with a storm
    # guard floor of 30 s (half the lifetime, the floor's cap). Pebble answers renewalInfo with
    # Retry-After: 6 hours; --ari-recheck-max makes the operator ask again every 2 seconds.
    # Windows are relative to the certificate's notBefore.
    pebble = pebble_factory(validity=60)
    operator_factory(namespace, extra=[SECRET_CHECK, "--ari-recheck-max=2"])
    issuer = pebble_issuer(k, namespace, pebble)
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=["web.ari.lab.test"])
    first = wait_revision(k, namespace, "web", 1)
    old_pem = secret_of(k, namespace, "web-tls")["tls.crt"]
    old = load_chain(old_pem)[0]
    ari = chosen_ari(first)
    assert ari is not None and ari["certID"] == ari_cert_id(old_pem), first["status"]

    nb = old.not_valid_before_utc
    window = (nb + start, nb + end)
    pebble.set_renewal_info(old_pem, start=window[0], end=window[1])

    wait_revision(k, namespace, "web", 2, timeout=90)
    new = assert_secret_matches(
        k, namespace, "web-tls", dns_names=["web.ari.lab.test"], root_pem=pebble.root_pem()
    )
    assert new.serial_number != old.serial_number
    renewed = new.not_valid_before_utc
    assert nb + earliest - timedelta(seconds=1) <= renewed <= nb + latest, (nb, renewed)
    # The renewal order named the certificate it replaces, and Pebble accepted it as such.
    issuing_events = events(k, namespace, "web", "Issuing")
    orders = [e["message"] for e in issuing_events if "created ACME order" in e["message"]]
    assert len(orders) == 2, orders
    assert orders[1].endswith(f"replacing certificate {ari_cert_id(old_pem)}"), orders
    assert "replacing" not in orders[0], orders
    assert len(pebble.replacements()) == 1, pebble.log_text()[-3000:]


# -- the plain schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "before"),
    [
        pytest.param({}, lambda life: life / 3, id="the CA's window alone by default"),
        pytest.param(
            {"renewBefore": "720h"},
            lambda life: timedelta(hours=720),
            id="renewBefore counts back from expiry",
        ),
        pytest.param(
            {"renewBeforePercentage": 25},
            lambda life: life / 4,
            id="renewBeforePercentage counts back a share of the lifetime",
        ),
        pytest.param(
            {"renewBeforePercentage": 60},
            lambda life: life * 0.6,
            id="jitter never moves a renewal the user put before the middle",
        ),
    ],
)
def test_renewal_time_follows_the_window_capped_by_an_explicit_limit(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    spec: dict[str, Any],
    before: Callable[[timedelta], timedelta],
) -> None:
    operator_factory(namespace, extra=[SECRET_CHECK, "--ari-recheck-max=2"])
    issuer = lab_issuer(lab, k, namespace)
    make_certificate(
        k, namespace, "web", issuerRef={"name": issuer}, dnsNames=["web.plain.lab.test"], **spec
    )
    first = wait_revision(k, namespace, "web", 1)
    pem = secret_of(k, namespace, "web-tls")["tls.crt"]
    leaf = load_chain(pem)[0]
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    uid = first["metadata"]["uid"]
    stored = first["status"]["issued"]["jitterSeconds"]
    # Jitter: fixed by the UID, at most 5% of the lifetime and six hours, stored once.
    assert stored == int(jitter_for(uid, na - nb).total_seconds())
    assert 0 <= stored <= min(6 * 3600, (na - nb).total_seconds() * 0.05)
    # Jitter moves renewal earlier, but not past the middle of the lifetime; a time the user
    # put before the middle already stays where it is.
    base = (na - before(na - nb)).replace(microsecond=0)
    plain = max(base - timedelta(seconds=stored), min(base, nb + (na - nb) / 2))
    assert when(first["status"]["notBefore"]) == nb and when(first["status"]["notAfter"]) == na
    # With ARI, the time chosen in Pebble's window; a renewBefore(Percentage) the user set
    # caps it (the default two thirds does not apply).
    explicit = bool(spec)
    ari = chosen_ari(first)
    assert ari is not None, first["status"]
    chosen = when(ari["selectedTime"])
    expected = min(plain, chosen) if explicit else chosen
    assert when(first["status"]["renewalTime"]) == expected, first["status"]

    # A window after expiry (a broken CA) is cut off at 90% of the lifetime.
    set_renewal_info(
        lab.env["PEBBLE_MGMT_URL"],
        Path(lab.env["PEBBLE_TLS_CA"]),
        pem,
        start=na + timedelta(days=1),
        end=na + timedelta(days=2),
    )

    def moved() -> dict[str, Any] | None:
        obj = certificate(k, namespace, "web")
        a = chosen_ari(obj)
        return obj if a and when(a["windowStart"]) == na + timedelta(days=1) else None

    after = wait_for(
        moved, timeout=30, describe=lambda: explain(k, certificate(k, namespace, "web"))
    )
    latest = (nb + (na - nb) * 0.9).replace(microsecond=0)
    plain = min(plain, latest) if explicit else latest
    assert when(after["status"]["renewalTime"]) == plain, (after["status"], plain)
    assert after["status"]["revision"] == 1


# -- re-issue on change -------------------------------------------------------------------------


def _self_signed(names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def _patch_secret_data(k: Kube, namespace: str, name: str, **data: bytes) -> None:
    encoded = {key.replace("_", "."): base64.b64encode(v).decode() for key, v in data.items()}
    k.merge_patch(core_path("secrets", namespace, name), {"data": encoded})


def _add_name(k: Kube, namespace: str, names: list[str]) -> list[str]:
    wanted = [*names, "extra.change.lab.test"]
    k.merge_patch(ours_path("certificates", namespace, "web"), {"spec": {"dnsNames": wanted}})
    return wanted


def _rsa_key(k: Kube, namespace: str, names: list[str]) -> list[str]:
    patch = {"spec": {"privateKey": {"algorithm": "RSA", "size": 2048}}}
    k.merge_patch(ours_path("certificates", namespace, "web"), patch)
    return names


def _delete_secret(k: Kube, namespace: str, names: list[str]) -> list[str]:
    k.delete(core_path("secrets", namespace, "web-tls"))
    return names


def _foreign_cert(k: Kube, namespace: str, names: list[str]) -> list[str]:
    crt, _ = _self_signed(names)
    _patch_secret_data(k, namespace, "web-tls", tls_crt=crt)
    return names


def _foreign_key(k: Kube, namespace: str, names: list[str]) -> list[str]:
    _, key = _self_signed(names)
    _patch_secret_data(k, namespace, "web-tls", tls_key=key)
    return names


@pytest.mark.parametrize(
    ("change", "why", "key_type"),
    [
        pytest.param(
            _add_name,
            "certificate lacks dnsNames [extra.change.lab.test]",
            ec.EllipticCurvePublicKey,
            id="adding a dnsName",
        ),
        pytest.param(
            _rsa_key,
            "private key's algorithm or size differs from spec",
            rsa.RSAPublicKey,
            id="changing privateKey.algorithm",
        ),
        pytest.param(
            _delete_secret,
            "Secret does not exist",
            ec.EllipticCurvePublicKey,
            id="deleting the Secret",
        ),
        pytest.param(
            _foreign_cert,
            "private key does not match its certificate",
            ec.EllipticCurvePublicKey,
            id="replacing tls.crt with another certificate",
        ),
        pytest.param(
            _foreign_key,
            "private key does not match its certificate",
            ec.EllipticCurvePublicKey,
            id="replacing tls.key",
        ),
    ],
)
def test_reissues_when_spec_or_secret_no_longer_match(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    change: Callable[[Kube, str, list[str]], list[str]],
    why: str,
    key_type: type,
) -> None:
    operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = lab_issuer(lab, k, namespace)
    names = ["web.change.lab.test"]
    make_certificate(k, namespace, "web", issuerRef={"name": issuer}, dnsNames=names)
    wait_revision(k, namespace, "web", 1)
    old = leaf_of(k, namespace, "web-tls")

    wanted = change(k, namespace, names)

    after = wait_revision(k, namespace, "web", 2)
    root = Path(lab.env["PEBBLE_ROOT"]).read_bytes()
    new = assert_secret_matches(k, namespace, "web-tls", dns_names=wanted, root_pem=root)
    assert new.serial_number != old.serial_number
    assert isinstance(new.public_key(), key_type)
    assert after["status"]["revision"] == 2
    # The re-issue was for the expected reason. Events are aggregated by message: after a deleted
    # Secret, the first issuance's "Secret does not exist" Event counts two.
    issuing = events(k, namespace, "web", "Issuing")
    count = sum(int(e.get("count") or 1) for e in issuing if why in e["message"])
    assert count == (2 if why == "Secret does not exist" else 1), [
        (e["message"], e.get("count")) for e in issuing
    ]


# -- on request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "same_key"),
    [
        pytest.param("Always", False, id="renew re-issues with a new key by default"),
        pytest.param("Never", True, id="renew keeps the key with rotationPolicy Never"),
    ],
)
def test_acmebridge_renew_reissues(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    policy: str,
    same_key: bool,
) -> None:
    operator_factory(namespace, extra=[SECRET_CHECK])
    issuer = lab_issuer(lab, k, namespace)
    make_certificate(
        k,
        namespace,
        "web",
        issuerRef={"name": issuer},
        dnsNames=["web.manual.lab.test"],
        privateKey={"rotationPolicy": policy},
    )
    wait_revision(k, namespace, "web", 1)
    before = secret_of(k, namespace, "web-tls")

    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "acmebridge"), "renew", "-n", namespace, "web"],
        env={**os.environ, "KUBECONFIG": lab.env["KUBECONFIG"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{namespace}/web" in result.stdout

    wait_revision(k, namespace, "web", 2)
    after = secret_of(k, namespace, "web-tls")
    old, new = load_chain(before["tls.crt"])[0], load_chain(after["tls.crt"])[0]
    assert new.serial_number != old.serial_number
    assert (after["tls.key"] == before["tls.key"]) is same_key
    assert key_matches(new, after["tls.key"])
    started = [e["message"] for e in events(k, namespace, "web", "Issuing")]
    assert any("manually triggered" in m for m in started), started
    assert condition(certificate(k, namespace, "web"), "Issuing") is None
