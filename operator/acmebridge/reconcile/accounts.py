"""ACME accounts of Issuers and ClusterIssuers: load or create the key, register, keep a session.

A namespaced Issuer reads Secrets only in its own namespace; a ClusterIssuer only in the
cluster-resource namespace. The account key Secret is created when missing (unless
``disableAccountKeyGeneration``) and marked as the operator's; an existing Secret is read, never
overwritten. One session per Issuer (and so per directory and account) is cached until the
Issuer's spec changes, so Certificates share its HTTP connection and nonce pool.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acmebridge.adapters import acme_client as acme
from acmebridge.adapters.acme_messages import AccountRef, DirectoryInfo
from acmebridge.adapters.acme_transport import load_account_key
from acmebridge.adapters.kube import Conflict, NotFound, core_path
from acmebridge.domain import secret as secrets
from acmebridge.domain.allowlist import server_allowed
from acmebridge.domain.eab import eab_mac_key
from acmebridge.domain.errors import SpecError
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
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
    #: the account's order list, to find an order created just before a crash (may be absent)
    orders_url: str | None = None
    #: where the Issuer's Secrets live (its namespace, or the cluster-resource namespace)
    secret_namespace: str = ""


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


async def read_secret_key(
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
    pem = await read_secret_key(rt, namespace, ref.name, ref.key, what="account key")
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
    except NotFound as e:
        if issuer.get("kind") != "ClusterIssuer":
            raise
        raise AccountError(
            "ClusterResourceNamespaceMissing",
            f"namespace '{namespace}' does not exist: ClusterIssuers keep their account keys "
            "in the operator's cluster-resource namespace; create it, or run the operator with "
            "--cluster-resource-namespace set to a namespace that exists",
            retry=True,
        ) from e
    except Conflict as e:
        # Someone created it between our read and our write: use theirs, never overwrite it.
        existing = await read_secret_key(rt, namespace, ref.name, ref.key, what="account key")
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
    raw = await read_secret_key(rt, namespace, ref.name, ref.key, what="external account binding")
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


def parse_issuer(issuer: Mapping[str, Any]) -> AcmeIssuerSpec:
    return AcmeIssuerSpec.from_body(issuer.get("spec") or {})


class Accounts:
    """The registered account of each Issuer, registered once however many ask at a time.

    After a restart every pending Certificate of an Issuer asks for its account at once; one
    registers (a ``newAccount`` request) while the others wait on the Issuer's lock and then
    share the result. The cache holds one session per Issuer until the Issuer's spec changes.
    """

    def __init__(self) -> None:
        self._cache: dict[ObjectKey, Account] = {}
        self._locks: dict[ObjectKey, asyncio.Lock] = {}

    def get(self, key: ObjectKey) -> Account | None:
        return self._cache.get(key)

    def forget(self, key: ObjectKey) -> None:
        """The Issuer is gone. Its session is not closed here: a Certificate reconcile may still
        be using it; it is released when the last reference goes (the session's finalizer)."""
        self._cache.pop(key, None)
        self._locks.pop(key, None)

    def values(self) -> list[Account]:
        return list(self._cache.values())

    def items(self) -> list[tuple[ObjectKey, Account]]:
        return list(self._cache.items())

    async def ensure(self, rt: Runtime, key: ObjectKey, issuer: Mapping[str, Any]) -> Account:
        """The Issuer's account, registering it when the cached one is missing or stale."""
        cached = self._current(key, issuer)
        if cached is not None:
            return cached
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._current(key, issuer)
            if cached is not None:
                return cached
            account = await _register(rt, issuer)
            self._cache[key] = account
            return account

    async def reregister(
        self, rt: Runtime, key: ObjectKey, issuer: Mapping[str, Any], stale: Account
    ) -> Account:
        """The CA no longer knows ``stale`` (a CA restored from an empty database): register the
        same key again, once, however many Certificates found out at the same time."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = self._cache.get(key)
            if current is not None and current is not stale:
                return current
            self._cache.pop(key, None)
            account = await _register(rt, issuer)
            self._cache[key] = account
            return account

    def _current(self, key: ObjectKey, issuer: Mapping[str, Any]) -> Account | None:
        meta = issuer["metadata"]
        cached = self._cache.get(key)
        if (
            cached is not None
            and cached.generation == int(meta.get("generation", 0))
            and cached.uid == str(meta.get("uid", ""))
        ):
            return cached
        return None


async def _register(rt: Runtime, issuer: Mapping[str, Any]) -> Account:
    meta = issuer["metadata"]
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
    return Account(
        session=session,
        ref=AccountRef(uri=info.uri, key_pem=account_pem),
        directory=directory,
        spec=spec,
        generation=int(meta.get("generation", 0)),
        uid=str(meta.get("uid", "")),
        orders_url=info.orders,
        secret_namespace=namespace,
    )
