"""ACME accounts of Issuers and ClusterIssuers: load or create the key, register, keep a session.

A namespaced Issuer reads Secrets only in its own namespace; a ClusterIssuer only in the
cluster-resource namespace. The account key Secret is created when missing (unless
``disableAccountKeyGeneration``) and marked as the operator's; an existing Secret is read, never
overwritten. One session per Issuer (and so per directory and account) is cached until the
Issuer's spec changes, so Certificates share its HTTP connection and nonce pool.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acmebridge.adapters import acme_client as acme
from acmebridge.adapters.acme_messages import AccountRef, DirectoryInfo
from acmebridge.adapters.kube import Conflict, core_path
from acmebridge.domain.errors import SpecError
from acmebridge.domain.spec import AcmeIssuerSpec
from acmebridge.reconcile.runtime import ObjectKey, Runtime

ACCOUNT_KEY_LABEL = "acmebridge.io/account-key-for"
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


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """Pure: is ``server`` permitted by the allow-list (URL prefixes or bare host names)?"""
    if not allowed:
        return True
    from urllib.parse import urlsplit

    host = (urlsplit(server).hostname or "").lower()
    for entry in allowed:
        e = entry.strip()
        if "://" in e:
            if server.startswith(e):
                return True
        elif host == e.lower():
            return True
    return False


async def _read_secret_key(
    rt: Runtime, namespace: str, name: str, key: str, *, what: str
) -> bytes | None:
    secret = await rt.io(rt.kube.get, core_path("secrets", namespace, name))
    if secret is None:
        return None
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
            "labels": {ACCOUNT_KEY_LABEL: f"{issuer.get('kind')}.{meta['name']}"[:63]},
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
    return (eab.key_id, raw.decode("ascii", "replace").strip(), eab.key_algorithm)


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
    old = cache.get(key)
    if old is not None:
        old.session.close()
    cache[key] = account
    return account


def key_hash(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()[:16]
