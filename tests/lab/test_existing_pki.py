"""An organisation's existing PKI behind ACME: step-ca seeded with an enterprise root and issuing
CA, external account binding, profiles, preferred chains, and the trust for the server's TLS.

step-ca is part of the lab (``tests.lab.labstepca``): its root is "Example Corp Root CA 2026",
its issuing CA publishes the root at an AIA caIssuers URL, and its ``acme-eab`` provisioner
requires EAB; each test that binds an account claims a key of its own. The Pebbles with two
profiles or an alternate root come from ``tests.lab.pebbles``, one per test; the one requiring EAB
is its ``ExtraPebble`` with two more settings in its config (``EabPebble``, below).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from acmebridge.adapters.acme_client import AcmeSession
from acmebridge.adapters.acme_messages import AccountRef
from acmebridge.adapters.kube import Kube, core_path
from tests.lab import labparts, labprobes, labproc
from tests.lab.conftest import acme_spec, b64_file, make_certificate, make_issuer
from tests.lab.labstepca import ISSUING_CN, ROOT_CN, claim_eab_key
from tests.lab.operator_proc import OperatorProcess
from tests.lab.pebbles import ExtraPebble, PebbleFactory, pebble_factory  # noqa: F401
from tests.lab.test_issuance import assert_chain_verifies_to, load_chain, ready, secret_data
from tests.lab.waits import condition, describe_events, get_object, wait_for

pytestmark = pytest.mark.lab

GROUP, VERSION = "acmebridge.io", "v1alpha1"
ISSUER_TIMEOUT = 60
# Servers' own words for an account without a binding and for a binding with a wrong MAC key.
STEPCA_NO_EAB = 'The request must include a value for the "externalAccountBinding" field'
PEBBLE_NO_EAB = "must include a value for the 'externalAccountBinding' field"
STEPCA_BAD_MAC = "The server experienced an internal error"
PEBBLE_BAD_MAC = "external account binding JWS verification error"
DAY = 24 * 3600


# -- servers ------------------------------------------------------------------------------------


@pytest.fixture
def stepca(lab: Any) -> Mapping[str, str]:
    """step-ca's settings from .lab/env (`labctl up`, which the lab fixture ran, started it)."""
    missing = [
        key
        for key in ("STEPCA_DIRECTORY_URL", "STEPCA_EAB_DIRECTORY_URL", "STEPCA_ROOT")
        if key not in lab.env
    ]
    assert not missing, f".lab/env has no {missing}: run `make lab-bin lab-up` to add step-ca"
    return lab.env  # type: ignore[no-any-return]


def stepca_spec(env: Mapping[str, str], **overrides: Any) -> dict[str, Any]:
    """An Issuer's spec.acme for step-ca: caBundle is the enterprise root, which signs its TLS."""
    spec: dict[str, Any] = {
        "server": env["STEPCA_DIRECTORY_URL"],
        "caBundle": b64_file(env["STEPCA_TLS_CA"]),
        "email": "pki@example.com",
        "privateKeySecretRef": {"name": "stepca-account"},
        "solvers": [{"http01": {"ingress": {"ingressClassName": "lab"}}}],
    }
    spec.update(overrides)
    return spec


def pebble_spec(lab: Any, pebble: ExtraPebble, **overrides: Any) -> dict[str, Any]:
    return acme_spec(lab, server=pebble.directory_url, **overrides)


@dataclass
class EabPebble(ExtraPebble):
    """A Pebble that requires external account binding, with the given key IDs and MAC keys."""

    mac_keys: Mapping[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["pebble"]["externalAccountBindingRequired"] = True
        config["pebble"]["externalAccountMACKeys"] = dict(self.mac_keys)
        return config


PEBBLE_KID = "kid-lab"
PEBBLE_HMAC = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@pytest.fixture
def eab_pebble(lab: Any) -> Iterator[EabPebble]:
    """A Pebble requiring EAB that knows one key, ``PEBBLE_KID`` with ``PEBBLE_HMAC``."""
    ports: set[int] = set()
    while len(ports) < 2:
        if (port := labproc.free_port()) not in labparts.FIXED_PORTS:
            ports.add(port)
    acme_port, mgmt_port = sorted(ports)
    pebble = EabPebble(
        name="eab",
        layout=labparts.Layout(Path(lab.env["LAB_DIR"]).parent),
        acme_port=acme_port,
        mgmt_port=mgmt_port,
        profiles={"default": {"description": "90 days", "validityPeriod": 90 * DAY}},
        mac_keys={PEBBLE_KID: PEBBLE_HMAC},
    )
    pebble.start()
    yield pebble
    pebble.stop()
    print(f"pebble log: {pebble.log_path}")


# -- waiting and reading -------------------------------------------------------------------------


def wait_issuer(
    k: Kube,
    namespace: str,
    name: str,
    *,
    status: str = "True",
    reason: str | None = None,
    says: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Waits until the Issuer's Ready condition has ``status`` (and ``reason``, and every text in
    ``says`` in its message); on timeout the message shows its status and Events."""
    seen: list[dict[str, Any] | None] = [None]

    def met() -> dict[str, Any] | None:
        obj = seen[0] = get_object(k.api, GROUP, VERSION, "issuers", namespace, name)
        c = condition(obj, "Ready")
        if c is None or c.get("status") != status or (reason and c.get("reason") != reason):
            return None
        return obj if all(text in c.get("message", "") for text in says) else None

    def describe() -> str:
        want = f"Issuer {namespace}/{name} Ready={status} reason={reason} saying {says}"
        obj = seen[0]
        if obj is None:
            return f"{want}; the Issuer does not exist"
        return (
            f"{want}\nstatus:\n{yaml.safe_dump(obj.get('status') or {})}"
            f"events:\n{describe_events(k.api, obj)}"
        )

    return wait_for(met, timeout=ISSUER_TIMEOUT, interval=0.25, describe=describe)


def ready_message(obj: Mapping[str, Any]) -> str:
    found = condition(dict(obj), "Ready")
    assert found is not None
    return str(found.get("message", ""))


def directory_status(issuer: Mapping[str, Any]) -> dict[str, Any]:
    return dict(issuer["status"]["acme"]["directory"])


def event_reasons(k: Kube, namespace: str, name: str) -> list[str]:
    events = k.list(core_path("events", namespace))
    return [e["reason"] for e in events if e["involvedObject"]["name"] == name]


def eab_secret(k: Kube, namespace: str, name: str, mac_key: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"secret": base64.b64encode(mac_key.encode()).decode()},
    }
    k.create(core_path("secrets", namespace), body)


def binding(key_id: str, secret: str) -> dict[str, Any]:
    return {"keyID": key_id, "keySecretRef": {"name": secret, "key": "secret"}}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def random_mac_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


# -- 1. step-ca under the enterprise root -------------------------------------------------------


def test_step_ca_issues_under_the_enterprise_root_and_ca_crt_is_proven_through_aia(
    k: Kube, namespace: str, operator: OperatorProcess, stepca: Mapping[str, str]
) -> None:
    make_issuer(k, namespace, "stepca", stepca_spec(stepca))
    issuer = wait_issuer(k, namespace, "stepca")
    # step-ca offers no ARI, no profiles, and this provisioner needs no binding.
    assert directory_status(issuer) == {
        "ari": False,
        "profiles": [],
        "externalAccountRequired": False,
    }

    make_certificate(k, namespace, "web", issuerRef={"name": "stepca"}, dnsNames=["web.corp.test"])
    cert = ready(k, namespace, "web")

    data = secret_data(k, namespace, "web-tls")
    chain = load_chain(data["tls.crt"])
    root = x509.load_pem_x509_certificate(Path(stepca["STEPCA_ROOT"]).read_bytes())
    assert common_name(root.subject) == ROOT_CN
    # tls.crt is leaf and issuing CA; the root is not sent but given as ca.crt.
    assert [common_name(c.subject) for c in chain[1:]] == [ISSUING_CN]
    assert_chain_verifies_to(chain, root)
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root
    book = cert["status"]["issued"]
    # Neither caBundle (which holds the same root) nor a bundle proved it: the issuing CA's
    # caIssuers URL did, which is how it works for a client that has only the chain.
    assert book["caSource"] == "aia", book

    # No ARI: renewal is at two thirds of the real lifetime (step-ca's 24 h default, not the
    # Certificate's 90-day duration) minus the Certificate's jitter.
    assert cert["status"].get("renewalInfo") is None, cert["status"]
    not_before = parse_time(cert["status"]["notBefore"])
    not_after = parse_time(cert["status"]["notAfter"])
    assert not_after - not_before <= timedelta(hours=25)
    expected = (
        not_before + (not_after - not_before) * 2 / 3 - timedelta(seconds=book["jitterSeconds"])
    )
    renewal = parse_time(cert["status"]["renewalTime"])
    assert abs(renewal - expected) <= timedelta(seconds=1), (renewal, expected)


# -- 2, 3, 4. external account binding ----------------------------------------------------------


def test_the_eab_provisioner_refuses_an_unbound_account_and_accepts_a_bound_one(
    k: Kube, namespace: str, operator: OperatorProcess, stepca: Mapping[str, str]
) -> None:
    key_id, mac_key = claim_eab_key(Path(stepca["STEPCA_EAB_KEYS"]))
    eab_secret(k, namespace, "eab", mac_key)
    server = stepca["STEPCA_EAB_DIRECTORY_URL"]
    make_issuer(
        k,
        namespace,
        "unbound",
        stepca_spec(stepca, server=server, privateKeySecretRef={"name": "unbound-account"}),
    )
    make_issuer(
        k,
        namespace,
        "bound",
        stepca_spec(
            stepca,
            server=server,
            privateKeySecretRef={"name": "bound-account"},
            externalAccountBinding=binding(key_id, "eab"),
        ),
    )

    refused = wait_issuer(k, namespace, "unbound", status="False", reason="ExternalAccountRequired")
    assert STEPCA_NO_EAB in ready_message(refused)
    assert "ExternalAccountRequired" in event_reasons(k, namespace, "unbound")

    bound = wait_issuer(k, namespace, "bound")
    assert directory_status(bound)["externalAccountRequired"] is True
    make_certificate(k, namespace, "web", issuerRef={"name": "bound"}, dnsNames=["eab.corp.test"])
    ready(k, namespace, "web")
    root = x509.load_pem_x509_certificate(Path(stepca["STEPCA_ROOT"]).read_bytes())
    assert_chain_verifies_to(load_chain(secret_data(k, namespace, "web-tls")["tls.crt"]), root)


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("step-ca", id="step-ca's words for a wrong MAC key reach the condition"),
        pytest.param("pebble", id="Pebble's words for a wrong MAC key reach the condition"),
    ],
)
def test_a_wrong_eab_secret_gives_ready_false_with_the_servers_message(
    lab: Any,
    k: Kube,
    namespace: str,
    operator: OperatorProcess,
    stepca: Mapping[str, str],
    request: pytest.FixtureRequest,
    server: str,
) -> None:
    if server == "step-ca":
        key_id, _ = claim_eab_key(Path(stepca["STEPCA_EAB_KEYS"]))
        spec = stepca_spec(stepca, server=stepca["STEPCA_EAB_DIRECTORY_URL"])
        words = STEPCA_BAD_MAC
    else:
        pebble: EabPebble = request.getfixturevalue("eab_pebble")
        key_id, spec, words = PEBBLE_KID, pebble_spec(lab, pebble), PEBBLE_BAD_MAC
    eab_secret(k, namespace, "eab", random_mac_key())
    make_issuer(k, namespace, "wrong", {**spec, "externalAccountBinding": binding(key_id, "eab")})

    refused = wait_issuer(
        k, namespace, "wrong", status="False", reason="ErrRegisterACMEAccount", says=(words,)
    )
    message = ready_message(refused)
    # Which binding was sent, and where its MAC key lives, so the user knows what to check.
    assert key_id in message and "'eab'" in message, message
    assert "ErrRegisterACMEAccount" in event_reasons(k, namespace, "wrong")


def test_a_mac_key_that_is_not_base64_is_refused_before_it_is_sent(
    k: Kube, namespace: str, operator: OperatorProcess, stepca: Mapping[str, str]
) -> None:
    # Refused before any request, so no key of the pool is spent.
    eab_secret(k, namespace, "eab", "not a MAC key!")
    spec = stepca_spec(
        stepca,
        server=stepca["STEPCA_EAB_DIRECTORY_URL"],
        externalAccountBinding=binding("kid-never-sent", "eab"),
    )
    make_issuer(k, namespace, "mangled", spec)
    refused = wait_issuer(
        k,
        namespace,
        "mangled",
        status="False",
        reason="InvalidEABKey",
        says=(f"Secret '{namespace}/eab' key 'secret' is not an unpadded base64url MAC key",),
    )
    assert "not a MAC key" not in ready_message(refused)


def test_an_eab_pebble_refuses_an_unbound_account_and_issues_to_a_bound_one(
    lab: Any, k: Kube, namespace: str, operator: OperatorProcess, eab_pebble: EabPebble
) -> None:
    eab_secret(k, namespace, "eab", PEBBLE_HMAC)
    make_issuer(
        k,
        namespace,
        "unbound",
        pebble_spec(lab, eab_pebble, privateKeySecretRef={"name": "unbound-account"}),
    )
    make_issuer(
        k,
        namespace,
        "bound",
        pebble_spec(
            lab,
            eab_pebble,
            privateKeySecretRef={"name": "bound-account"},
            externalAccountBinding=binding(PEBBLE_KID, "eab"),
            issuingCABundle=base64.b64encode(eab_pebble.root_pem()).decode(),
        ),
    )

    refused = wait_issuer(k, namespace, "unbound", status="False", reason="ExternalAccountRequired")
    assert PEBBLE_NO_EAB in ready_message(refused)
    bound = wait_issuer(k, namespace, "bound")
    assert directory_status(bound) == {
        "ari": True,
        "profiles": ["default"],
        "profileDescriptions": {"default": "90 days"},
        "externalAccountRequired": True,
        "termsOfService": "data:text/plain,Do%20what%20thou%20wilt",
    }
    make_certificate(k, namespace, "web", issuerRef={"name": "bound"}, dnsNames=["eab.pebble.test"])
    ready(k, namespace, "web")
    data = secret_data(k, namespace, "web-tls")
    root = x509.load_pem_x509_certificate(eab_pebble.root_pem())
    assert_chain_verifies_to(load_chain(data["tls.crt"]), root)
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root


# -- 5. profiles --------------------------------------------------------------------------------

PROFILES: dict[str, dict[str, Any]] = {
    "classic": {"description": "90 days", "validityPeriod": 90 * DAY},
    "shortlived": {"description": "6 days", "validityPeriod": 6 * DAY},
}


def server_order_profiles(
    k: Kube, namespace: str, certificate: str, issuer: Mapping[str, Any], pebble: ExtraPebble
) -> list[str | None]:
    """The profile of each order the Certificate created, as the ACME server reports it (read
    with the Issuer's account key from its Secret)."""
    events = k.list(core_path("events", namespace))
    marker = "created ACME order "
    urls = [
        e["message"].split(marker, 1)[1].split(",")[0].strip()
        for e in events
        if e["reason"] == "Issuing"
        and e["involvedObject"]["name"] == certificate
        and marker in e["message"]
    ]
    assert urls, f"no Issuing event with an order for {certificate}"
    key_pem = secret_data(k, namespace, "pebble-account")["tls.key"]
    account = AccountRef(uri=issuer["status"]["acme"]["uri"], key_pem=key_pem)
    with AcmeSession(pebble.directory_url, ca_bundle=pebble.tls_ca.read_bytes()) as session:
        return [session.get_order(account, url).profile for url in urls]


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param("classic", id="the classic profile gives 90 days"),
        pytest.param("shortlived", id="the short-lived profile gives 6 days"),
    ],
)
def test_each_profile_gives_the_validity_it_promises(
    lab: Any,
    k: Kube,
    namespace: str,
    operator: OperatorProcess,
    pebble_factory: PebbleFactory,  # noqa: F811
    profile: str,
) -> None:
    pebble = pebble_factory(profiles=PROFILES)
    make_issuer(
        k,
        namespace,
        "pebble",
        pebble_spec(lab, pebble, profile=profile, privateKeySecretRef={"name": "pebble-account"}),
    )
    issuer = wait_issuer(k, namespace, "pebble")
    assert directory_status(issuer)["profiles"] == ["classic", "shortlived"]
    assert directory_status(issuer)["profileDescriptions"] == {
        "classic": "90 days",
        "shortlived": "6 days",
    }
    make_certificate(k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["p.pebble.test"])
    ready(k, namespace, "web")

    # Pebble picks a random profile for an order that names none, so the lifetime alone could
    # match by chance: the order as the server recorded it must name the profile.
    assert server_order_profiles(k, namespace, "web", issuer, pebble) == [profile]
    leaf = load_chain(secret_data(k, namespace, "web-tls")["tls.crt"])[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    # Pebble's notAfter is the last second of the validity period.
    promised = timedelta(seconds=int(PROFILES[profile]["validityPeriod"]))
    assert lifetime == promised - timedelta(seconds=1), lifetime


@pytest.mark.parametrize(
    ("server", "offered"),
    [
        pytest.param("step-ca", "offered: none", id="step-ca offers no profile"),
        pytest.param(
            "pebble", "offered: classic, shortlived", id="Pebble offers only its own profiles"
        ),
    ],
)
def test_a_profile_the_server_does_not_offer_is_refused_on_the_issuer(
    lab: Any,
    k: Kube,
    namespace: str,
    operator: OperatorProcess,
    stepca: Mapping[str, str],
    pebble_factory: PebbleFactory,  # noqa: F811
    server: str,
    offered: str,
) -> None:
    if server == "step-ca":
        spec = stepca_spec(stepca, profile="tlsserver")
    else:
        spec = pebble_spec(lab, pebble_factory(profiles=PROFILES), profile="tlsserver")
    make_issuer(k, namespace, "profiled", spec)
    refused = wait_issuer(
        k,
        namespace,
        "profiled",
        status="False",
        reason="ProfileNotOffered",
        says=("'tlsserver' is not offered", offered),
    )
    assert refused["status"].get("acme") is None
    assert "ProfileNotOffered" in event_reasons(k, namespace, "profiled")


# -- 6. preferred chain -------------------------------------------------------------------------


def alternate_root(pebble: ExtraPebble) -> x509.Certificate:
    """Pebble's second root (PEBBLE_ALTERNATE_ROOTS=1), from its management API."""
    url = f"{pebble.mgmt_url}/roots/1"
    got = labprobes.http_get(url, ca=pebble.tls_ca)
    assert got is not None and got[0] == 200, f"{url}: {got}"
    return x509.load_pem_x509_certificate(got[1])


@pytest.mark.parametrize(
    ("preferred", "expected_root"),
    [
        pytest.param("alternate", 1, id="the alternate root's name picks the alternate chain"),
        pytest.param("default", 0, id="the default root's name picks the default chain"),
        pytest.param(None, 0, id="without a preference the default chain is used"),
        pytest.param("No Such Root CA", 0, id="a name no chain has falls back to the default"),
    ],
)
def test_preferred_chain_picks_the_chain_under_the_named_root(
    lab: Any,
    k: Kube,
    namespace: str,
    operator: OperatorProcess,
    pebble_factory: PebbleFactory,  # noqa: F811
    preferred: str | None,
    expected_root: int,
) -> None:
    pebble = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "1"})
    roots = [
        x509.load_pem_x509_certificate(pebble.root_pem()),
        alternate_root(pebble),
    ]
    assert roots[0] != roots[1]
    names: dict[str | None, str | None] = {
        "default": common_name(roots[0].subject),
        "alternate": common_name(roots[1].subject),
        None: None,
    }
    overrides: dict[str, Any] = {
        # Both roots: ca.crt is whichever one verifiably signed the chosen chain.
        "issuingCABundle": base64.b64encode(
            b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots)
        ).decode(),
    }
    chosen_name = names.get(preferred, preferred)
    if chosen_name is not None:
        overrides["preferredChain"] = chosen_name
    make_issuer(k, namespace, "pebble", pebble_spec(lab, pebble, **overrides))
    make_certificate(k, namespace, "web", issuerRef={"name": "pebble"}, dnsNames=["c.pebble.test"])
    ready(k, namespace, "web")

    data = secret_data(k, namespace, "web-tls")
    chain = load_chain(data["tls.crt"])
    root = roots[expected_root]
    assert chain[-1].issuer == root.subject
    assert_chain_verifies_to(chain, root)
    assert x509.load_pem_x509_certificate(data["ca.crt"]) == root


# -- 7. the trust for the server's TLS ----------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("step-ca", id="step-ca with Pebble's TLS CA as caBundle"),
        pytest.param("pebble", id="Pebble with the enterprise root as caBundle"),
    ],
)
def test_a_ca_bundle_that_does_not_match_the_servers_tls_is_reported_on_the_issuer(
    lab: Any,
    k: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    stepca: Mapping[str, str],
    tmp_path: Path,
    server: str,
) -> None:
    # The operator process's default trust accepts both servers, so a fallback from caBundle to
    # it would make the mismatched Issuer ready.
    default_trust = tmp_path / "default-trust.pem"
    default_trust.write_bytes(
        Path(stepca["STEPCA_TLS_CA"]).read_bytes() + Path(lab.env["PEBBLE_TLS_CA"]).read_bytes()
    )
    operator_factory(
        namespace,
        process_env={"SSL_CERT_FILE": str(default_trust), "REQUESTS_CA_BUNDLE": str(default_trust)},
    )
    if server == "step-ca":
        spec = stepca_spec(stepca, caBundle=b64_file(lab.env["PEBBLE_TLS_CA"]))
    else:
        spec = acme_spec(lab, caBundle=b64_file(stepca["STEPCA_TLS_CA"]))
    make_issuer(k, namespace, "mistrusted", spec)
    without_bundle = {key: value for key, value in spec.items() if key != "caBundle"}
    make_issuer(
        k, namespace, "default-trust", {**without_bundle, "privateKeySecretRef": {"name": "other"}}
    )

    wait_issuer(
        k,
        namespace,
        "mistrusted",
        status="False",
        reason="TLSError",
        says=(
            "the ACME server's TLS certificate is not trusted by spec.acme.caBundle",
            "unable to get local issuer certificate",
        ),
    )
    assert "TLSError" in event_reasons(k, namespace, "mistrusted")
    # The same server with no caBundle: the default trust is used, and it does trust the server.
    wait_issuer(k, namespace, "default-trust")
