"""ACME accounts of Issuers and ClusterIssuers: load or create the key, register, keep a session.

A namespaced Issuer reads Secrets only in its own namespace; a ClusterIssuer only in the
cluster-resource namespace. The account key Secret is created when missing (unless
``disableAccountKeyGeneration``) and marked as the operator's; an existing Secret is read, never
overwritten. One session per Issuer (and so per directory and account) is cached until the
Issuer's spec changes, so Certificates share its HTTP connection and nonce pool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from acmebridge.adapters import acme_client as acme
from acmebridge.adapters.acme_messages import AccountRef, DirectoryInfo
from acmebridge.adapters.acme_transport import load_account_key
from acmebridge.adapters.kube import Conflict, core_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.errors import SpecError
from acmebridge.domain.spec import AcmeIssuerSpec
from acmebridge.reconcile.runtime import ObjectKey, Runtime

ACCOUNT_KEY_LABEL = secrets.ACCOUNT_KEY_LABEL
ISSUER_UID_ANNOTATION = "acmebridge.io/issuer-uid"


@dataclass(frozen=True)
class Account:
    """A registered account, ready for orders."""

    session: acme.AcmeSession
    ref: AccountRef
    directory: DirectoryInfo
    spec: AcmeIssuerSpec
    generation: int
    uid: str


class AccountError(Exception):
    """The account cannot be set up; ``reason`` and ``message`` go to the Ready condition."""

    def __init__(self, reason: str, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry = retry


def secrets_namespace(rt: Runtime, issuer: Mapping[str, Any]) -> str:
    if issuer.get("kind") == "ClusterIssuer":
        return rt.config.cluster_resource_namespace
    return str(issuer["metadata"]["namespace"])


# User info, backslashes, whitespace and control characters: URL parsers disagree on where the
# host of such a URL is (see server_allowed).
_AMBIGUOUS_URL = re.compile(r"[@\\\s\x00-\x1f\x7f]")


def _url_parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) with the scheme's default port; ValueError when unparsable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower().rstrip("."), port, parts.path or "/"


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """Pure: is ``server`` permitted by the allow-list of URL prefixes or bare host names?

    A URL entry is compared with the parsed server URL, never as text: scheme, host and port
    must be equal, and the path must continue the entry's path at a '/'. As text,
    ``https://ca.example`` would be a prefix of ``https://ca.example.evil.net/`` and of
    ``https://ca.example@evil.net/``. A host entry allows that host on any port. A server URL
    with user info, a backslash or whitespace is never allowed: Python's ``urlsplit`` finds the
    host of ``https://evil.net\\@ca.example/`` to be ca.example while urllib3, which sends the
    requests, connects to evil.net. An empty list allows every server.
    """
    if not allowed:
        return True
    if _AMBIGUOUS_URL.search(server):
        return False
    try:
        scheme, host, port, path = _url_parts(server)
    except ValueError:
        return False
    if not host:
        return False
    for entry in (e.strip() for e in allowed):
        if not entry:
            continue
        if "://" not in entry:
            if host == entry.lower().rstrip("."):
                return True
            continue
        try:
            want_scheme, want_host, want_port, want_path = _url_parts(entry)
        except ValueError:
            continue
        if (scheme, host, port) != (want_scheme, want_host, want_port):
            continue
        if want_path.endswith("/"):
            if path.startswith(want_path):
                return True
        elif path == want_path or path.startswith(want_path + "/"):
            return True
    return False


async def _read_secret_key(
    rt: Runtime, namespace: str, name: str, key: str, *, what: str
) -> bytes | None:
    secret = await rt.io(rt.kube.get, core_path("secrets", namespace, name))
    if secret is None:
        return None
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if secrets.CERTIFICATE_NAME_LABEL in labels or secrets.PENDING_KEY_FOR_LABEL in labels:
        # A Certificate's private key is not an Issuer's to use: whoever may edit Issuers but
        # not read Secrets would otherwise make the operator sign with (or MAC with, and send
        # to a server of their choosing) a key that is not theirs.
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        owner = annotations.get(secrets.CERTIFICATE_NAME_ANNOTATION) or labels.get(
            secrets.CERTIFICATE_NAME_LABEL
        )
        raise AccountError(
            "SecretConflict",
            f"{what} Secret '{namespace}/{name}' belongs to Certificate '{owner}'; an Issuer "
            "cannot use a Certificate's private key: give it a Secret of its own",
            retry=False,
        )
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        raise AccountError(
            "SecretKeyMissing",
            f"{what} Secret '{namespace}/{name}' has no key '{key}'",
            retry=False,
        )
    return base64.b64decode(raw)


async def _account_key(
    rt: Runtime, issuer: Mapping[str, Any], spec: AcmeIssuerSpec, namespace: str
) -> bytes:
    ref = spec.private_key_secret_ref
    pem = await _read_secret_key(rt, namespace, ref.name, ref.key, what="account key")
    if pem is not None:
        try:
            load_account_key(pem)
        except ValueError as e:
            # The library's message is not shown: it might quote what it could not parse.
            raise AccountError(
                "InvalidAccountKey",
                f"account key Secret '{namespace}/{ref.name}' key '{ref.key}' is not an "
                "unencrypted PEM private key of a supported type (RSA, or ECDSA P-256, P-384 "
                "or P-521): put the ACME account's key there",
                retry=False,
            ) from e
        return pem
    if spec.disable_account_key_generation:
        raise AccountError(
            "AccountKeyMissing",
            f"account key Secret '{namespace}/{ref.name}' does not exist and "
            "disableAccountKeyGeneration is set: create it with an existing account's key",
            retry=False,
        )
    pem = await rt.io(acme.generate_account_key)
    meta = issuer["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": ref.name,
            "namespace": namespace,
            "labels": {
                ACCOUNT_KEY_LABEL: secrets.label_value(f"{issuer.get('kind')}.{meta['name']}")
            },
            "annotations": {ISSUER_UID_ANNOTATION: str(meta.get("uid", ""))},
        },
        "data": {ref.key: base64.b64encode(pem).decode()},
    }
    try:
        await rt.io(rt.kube.create, core_path("secrets", namespace), body)
    except Conflict as e:
        # Someone created it between our read and our write: use theirs, never overwrite it.
        existing = await _read_secret_key(rt, namespace, ref.name, ref.key, what="account key")
        if existing is None:
            raise AccountError(
                "AccountKeyMissing", "account key Secret vanished", retry=True
            ) from e
        return existing
    return pem


async def _eab(rt: Runtime, spec: AcmeIssuerSpec, namespace: str) -> tuple[str, str, str] | None:
    eab = spec.external_account_binding
    if eab is None:
        return None
    ref = eab.key_secret_ref
    raw = await _read_secret_key(rt, namespace, ref.name, ref.key, what="external account binding")
    if raw is None:
        raise AccountError(
            "EABSecretMissing",
            f"external account binding Secret '{namespace}/{ref.name}' does not exist",
            retry=True,
        )
    try:
        mac_key = eab_mac_key(raw)
    except ValueError as e:
        raise AccountError(
            "InvalidEABKey",
            f"external account binding Secret '{namespace}/{ref.name}' key '{ref.key}' is not "
            f"an unpadded base64url MAC key: {e}",
            retry=True,
        ) from e
    return (eab.key_id, mac_key, eab.key_algorithm)


def eab_mac_key(raw: bytes) -> str:
    """Pure: the MAC key from an EAB Secret, checked to be base64 text as CAs issue it.

    Raises ValueError saying what is wrong (never quoting the key). The ACME library decodes the
    key leniently, skipping characters it does not know (or failing with an error no condition
    shows), so a mangled key would be sent as some other key, and the CA's refusal would not
    point here. Both alphabets are accepted: base64url, as RFC 8555 CAs issue keys, and the
    standard one, which the library decodes as well.
    """
    text = raw.decode("ascii", "replace").strip()
    if not re.fullmatch(r"[A-Za-z0-9_+/-]+={0,2}", text):
        raise ValueError(
            "it holds characters other than letters, digits, '-' and '_'; "
            "paste the key exactly as the CA issued it"
        )
    unpadded = text.rstrip("=")
    try:
        base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"it does not decode: {e}") from e
    return unpadded


def parse_issuer(issuer: Mapping[str, Any]) -> AcmeIssuerSpec:
    return AcmeIssuerSpec.from_body(issuer.get("spec") or {})


async def ensure_account(
    rt: Runtime, key: ObjectKey, issuer: Mapping[str, Any], cache: dict[ObjectKey, Account]
) -> Account:
    """The Issuer's account, registering it when the cached one is missing or stale."""
    meta = issuer["metadata"]
    generation = int(meta.get("generation", 0))
    uid = str(meta.get("uid", ""))
    cached = cache.get(key)
    if cached is not None and cached.generation == generation and cached.uid == uid:
        return cached
    try:
        spec = parse_issuer(issuer)
    except SpecError as e:
        raise AccountError(e.reason, e.message, retry=False) from e
    if issuer.get("kind") == "Issuer" and not server_allowed(
        spec.server, rt.config.allowed_acme_servers
    ):
        raise AccountError(
            "ServerNotAllowed",
            f"ACME server {spec.server} is not in the operator's allow-list for namespaced "
            "Issuers; ask the platform team to add it, or use a ClusterIssuer",
            retry=False,
        )
    namespace = secrets_namespace(rt, issuer)
    account_pem = await _account_key(rt, issuer, spec, namespace)
    eab = await _eab(rt, spec, namespace)
    session = acme.AcmeSession(
        spec.server,
        ca_bundle=spec.ca_bundle,
        skip_tls_verify=spec.skip_tls_verify,
        on_request=rt.metrics.acme_request,
    )
    directory = await rt.io(session.directory)
    if spec.profile and spec.profile not in directory.profiles:
        offered = ", ".join(sorted(directory.profiles)) or "none"
        raise AccountError(
            "ProfileNotOffered",
            f"profile '{spec.profile}' is not offered by {spec.server} (offered: {offered})",
            retry=False,
        )
    info = await rt.io(session.register_account, account_pem, email=spec.email, eab=eab)
    account = Account(
        session=session,
        ref=AccountRef(uri=info.uri, key_pem=account_pem),
        directory=directory,
        spec=spec,
        generation=generation,
        uid=uid,
    )
    # The replaced session is not closed here: a Certificate reconcile may still be using it.
    # Its HTTP pool and CA file are released when the last reference goes (the session's
    # finalizer), so an Issuer edit never pulls the trust file from under an issuance.
    cache[key] = account
    return account


def key_hash(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()[:16]
