"""Certificate reconcile: gather the state, decide with pure checks, act one issuance step.

Each call reads the Certificate (from the cache), its Issuer, and its Secret (by name), runs the
trigger checks, and then either settles the Certificate as Ready and sleeps until its renewal
time, or advances the issuance journal (``reconcile.issuance``) as far as it can go without
waiting. It returns the seconds until it wants to look again; it never sleeps itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from acmebridge.adapters.kube import core_path
from acmebridge.domain import chain as chains
from acmebridge.domain import secret as secrets
from acmebridge.domain.conditions import Condition, get_condition, set_condition
from acmebridge.domain.errors import AcmeUnavailable, SpecError
from acmebridge.domain.journal import OrderJournal
from acmebridge.domain.keys import key_matches_spec, load_private_key, public_key_fingerprint
from acmebridge.domain.match import spec_mismatch
from acmebridge.domain.schedule import backoff_delay
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time, parse_time
from acmebridge.domain.trigger import SecretState, TriggerInputs, Verdict, evaluate
from acmebridge.reconcile.accounts import Account, AccountError, ensure_account
from acmebridge.reconcile.runtime import ObjectKey, Runtime
from acmebridge.reconcile.secretwriter import decode_data

log = logging.getLogger("acmebridge.certificate")

MANUAL_REASON = "ManuallyTriggered"


@dataclass
class Ctx:
    """One reconcile's gathered state and the status patch it accumulates."""

    rt: Runtime
    key: ObjectKey
    body: dict[str, Any]
    spec: CertificateSpec
    now: datetime
    status: dict[str, Any]
    patch: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation", 0))

    def conditions(self) -> list[dict[str, Any]]:
        conds = self.patch.get("conditions", self.status.get("conditions") or [])
        return list(conds)

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        cond = Condition(
            type=type_,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            message=message,
            observed_generation=self.generation,
            last_transition_time=self.now,
        )
        self.patch["conditions"] = set_condition(self.conditions(), cond)

    def drop(self, type_: str) -> None:
        self.patch["conditions"] = [c for c in self.conditions() if c.get("type") != type_]

    def book(self) -> dict[str, Any]:
        """The operator's own bookkeeping in ``status.acmebridge`` (merged on write)."""
        current = dict(self.status.get("acmebridge") or {})
        current.update(self.patch.get("acmebridge") or {})
        return current

    def set_book(self, **values: Any) -> None:
        book = dict(self.patch.get("acmebridge") or {})
        book.update(values)
        self.patch["acmebridge"] = book

    async def flush(self) -> None:
        """Write the accumulated status patch, if it changes anything."""
        if not self.patch:
            return
        if _unchanged(self.status, self.patch):
            self.patch = {}
            return
        body = await self.rt.patch_status(self.key, self.patch)
        self.body = body
        self.status = dict(body.get("status") or {})
        self.patch = {}

    async def event(self, type_: str, reason: str, message: str) -> None:
        await self.rt.event(self.body, type_, reason, message)


def _unchanged(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    for k, v in patch.items():
        if k == "conditions":
            if _strip_times(status.get(k) or []) != _strip_times(v or []):
                return False
        elif isinstance(v, Mapping) and isinstance(status.get(k), Mapping):
            if not _unchanged(status[k], v):
                return False
        elif status.get(k) != v:
            return False
    return True


def _strip_times(conds: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conds]


def issuer_key(spec: CertificateSpec, namespace: str) -> ObjectKey:
    if spec.issuer_ref.kind == "ClusterIssuer":
        return ("clusterissuers", "", spec.issuer_ref.name)
    return ("issuers", namespace, spec.issuer_ref.name)


def assess_secret(
    secret: Mapping[str, Any] | None, spec: CertificateSpec, *, now: datetime
) -> SecretState:
    """Pure: what the TLS Secret holds, compared with the spec (never returns key material)."""
    if secret is None:
        return SecretState(exists=False)
    crt = decode_data(secret, "tls.crt")
    key_pem = decode_data(secret, "tls.key")
    state = SecretState(exists=True, has_cert=bool(crt), has_key=bool(key_pem))
    if not crt or not key_pem:
        return state
    try:
        leaf = chains.parse_pem_certificates(crt)[0]
    except (ValueError, IndexError) as e:
        return SecretState(True, True, True, cert_error=f"Secret's tls.crt cannot be parsed: {e}")
    try:
        key = load_private_key(key_pem)
    except ValueError:
        return SecretState(True, True, True, key_error="Secret's tls.key cannot be parsed")
    summary = chains.cert_summary(leaf)
    annotations = secret.get("metadata", {}).get("annotations") or {}
    return SecretState(
        exists=True,
        has_cert=True,
        has_key=True,
        key_matches_cert=public_key_fingerprint(key) == public_key_fingerprint(leaf),
        key_matches_spec=key_matches_spec(key, spec.private_key.algorithm, spec.private_key.size),
        names_mismatch=spec_mismatch(summary, spec),
        not_after=summary.not_after,
        issuer_annotation_matches=(
            annotations.get(secrets.ISSUER_NAME_ANNOTATION) == spec.issuer_ref.name
            and annotations.get(secrets.ISSUER_KIND_ANNOTATION) == spec.issuer_ref.kind
        ),
    )


def _time(status: Mapping[str, Any], key: str) -> datetime | None:
    raw = status.get(key)
    if not raw:
        return None
    try:
        return parse_time(str(raw))
    except ValueError:
        return None


async def reconcile_certificate(
    rt: Runtime, key: ObjectKey, accounts: dict[ObjectKey, Account]
) -> float | None:
    body = rt.cache.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        rt.metrics.certificate(None, key)
        return None
    try:
        return await _reconcile(rt, key, body, accounts)
    finally:
        rt.metrics.certificate(rt.cache.get(key), key)


async def _reconcile(
    rt: Runtime, key: ObjectKey, body: dict[str, Any], accounts: dict[ObjectKey, Account]
) -> float | None:
    now = rt.clock()
    status = dict(body.get("status") or {})
    try:
        spec = CertificateSpec.from_body(body.get("spec") or {})
    except SpecError as e:
        ctx = Ctx(rt, key, body, _placeholder_spec(), now, status)
        return await not_ready(ctx, e.reason, e.message, retry=None)
    ctx = Ctx(rt, key, body, spec, now, status)

    # Gather: the issuer and its account.
    ikey = issuer_key(spec, ctx.namespace)
    rt.depend(key, ikey)
    issuer = rt.cache.get(ikey)
    kind = spec.issuer_ref.kind
    where = f" in namespace '{ctx.namespace}'" if kind == "Issuer" else ""
    if issuer is None:
        return await not_ready(
            ctx,
            "IssuerNotFound",
            f"{kind} '{spec.issuer_ref.name}' does not exist{where}; create it or fix "
            "spec.issuerRef",
            retry=None,
        )
    ready = get_condition((issuer.get("status") or {}).get("conditions") or [], "Ready")
    if ready is None or ready.status != "True":
        why = f": {ready.reason}: {ready.message}" if ready else " yet"
        return await not_ready(
            ctx,
            "IssuerNotReady",
            f"{kind} '{spec.issuer_ref.name}' is not ready{why}",
            retry=None,
        )
    try:
        account = await ensure_account(rt, ikey, issuer, accounts)
    except AccountError as e:
        return await not_ready(ctx, "IssuerNotReady", f"{kind} account: {e.message}", retry=60.0)

    # Gather: the Secret, by name; never a Secret that is not ours.
    secret = await rt.io(rt.kube.get, core_path("secrets", ctx.namespace, spec.secret_name))
    own = secrets.ownership(
        (secret or {}).get("metadata"), certificate_name=ctx.name, certificate_uid=ctx.uid
    )
    if own is secrets.Ownership.FOREIGN:
        return await not_ready(
            ctx,
            "SecretConflict",
            secrets.conflict_message(
                (secret or {}).get("metadata") or {},
                certificate_name=ctx.name,
                certificate_uid=ctx.uid,
            )
            + " (acmebridge leaves the Secret untouched)",
            retry=120.0,
        )

    # Decide.
    sstate = assess_secret(secret, spec, now=now)
    spec_hash = spec.issuance_hash()
    book = ctx.book()
    journal = OrderJournal.from_status(status.get("order"))
    issuing = get_condition(ctx.conditions(), "Issuing")
    manual = bool(issuing and issuing.status == "True" and issuing.reason == MANUAL_REASON)
    verdict = evaluate(
        TriggerInputs(
            secret=sstate,
            spec_hash=spec_hash,
            issued_spec_hash=book.get("issuedSpecHash"),
            renewal_time=_time(status, "renewalTime"),
            manual_trigger=manual,
        ),
        now=now,
    )
    in_flight = journal is not None and journal.spec_hash == spec_hash
    if verdict is None and not in_flight:
        return await settle_ready(ctx, account, secret)

    # Back off after failures of this same spec; a manual trigger or a spec change resets it.
    failures = int(status.get("failedIssuanceAttempts") or 0)
    last_failure = _time(status, "lastFailureTime")
    manual_after_failure = bool(
        manual and issuing and last_failure and issuing.last_transition_time > last_failure
    )
    if (
        failures
        and last_failure
        and book.get("failedSpecHash") == spec_hash
        and not (manual_after_failure)
    ):
        retry_at = last_failure + _backoff(ctx, failures, book)
        if retry_at > now:
            ctx.set(
                "Issuing",
                "False",
                "Failed",
                f"Issuance failed {failures} time(s); retrying at {format_time(retry_at)}: "
                f"{book.get('lastFailure', 'see Events')}",
            )
            await ctx.flush()
            return (retry_at - now).total_seconds()

    from acmebridge.reconcile.issuance import advance

    async def reregister() -> Account:
        # The CA does not know the cached account: register the key again, and wake the Issuer
        # so that it publishes the new account URI. The old session is left to be collected:
        # other reconciles may still be using it.
        accounts.pop(ikey, None)
        try:
            fresh = await ensure_account(rt, ikey, issuer, accounts)
        except AccountError as e:
            raise AcmeUnavailable(f"registering the ACME account again failed: {e.message}") from e
        rt.wake(ikey, 0.0)
        return fresh

    reason = verdict or Verdict("InProgress", "Issuing certificate")
    return await advance(ctx, account, secret, sstate, journal, reason, reregister=reregister)


def _backoff(ctx: Ctx, failures: int, book: Mapping[str, Any]) -> timedelta:
    retry_after = book.get("retryAfterSeconds")
    return backoff_delay(
        failures,
        cap=ctx.rt.config.backoff_cap,
        retry_after=timedelta(seconds=float(retry_after)) if retry_after else None,
        seed=ctx.uid,
    )


async def not_ready(ctx: Ctx, reason: str, message: str, *, retry: float | None) -> float | None:
    """Ready=False with a reason the user can act on, plus an Event when it is news."""
    previous = get_condition(ctx.conditions(), "Ready")
    ctx.set("Ready", "False", reason, message)
    news = previous is None or previous.reason != reason or previous.message != message
    await ctx.flush()
    if news:
        await ctx.event("Warning", reason, message)
        log.warning("Certificate %s/%s: %s: %s", ctx.namespace, ctx.name, reason, message)
    return retry


async def settle_ready(
    ctx: Ctx, account: Account, secret: Mapping[str, Any] | None
) -> float | None:
    """Nothing to issue: Ready=True, timestamps from the Secret, wake at renewal time."""
    from acmebridge.reconcile import renewal

    crt = decode_data(secret, "tls.crt")
    assert crt is not None  # the trigger checks guarantee a parseable certificate
    leaf = chains.parse_pem_certificates(crt)[0]
    summary = chains.cert_summary(leaf)
    book = ctx.book()
    jitter = renewal.jitter(ctx, summary)
    ari = await renewal.ari_plan(ctx, account, crt, summary, book.get("ari"))
    renew_at = renewal.renewal_at(renewal.plain_renewal(ctx, summary, jitter), ari)
    ctx.patch.update(
        notBefore=format_time(summary.not_before),
        notAfter=format_time(summary.not_after),
        renewalTime=format_time(renew_at),
    )
    ready = get_condition(ctx.conditions(), "Ready")
    message = book.get("readyMessage") or "Certificate is up to date and has not expired"
    if ready is None or ready.status != "True" or ready.observed_generation != ctx.generation:
        ctx.set("Ready", "True", "Ready", message)
    if get_condition(ctx.conditions(), "Issuing") is not None:
        ctx.drop("Issuing")
    if "jitterSeconds" not in book:
        ctx.set_book(jitterSeconds=int(jitter.total_seconds()))
    if "issuedSpecHash" not in book:
        ctx.set_book(issuedSpecHash=ctx.spec.issuance_hash())
    if ari != book.get("ari"):
        ctx.set_book(ari=ari)
    await ctx.flush()
    if book.get("cleanupPending"):
        from acmebridge.reconcile.cleanup import cleanup_issuance

        await cleanup_issuance(ctx)
    return ready_wake(ctx, renew_at, ari)


def ready_wake(ctx: Ctx, renew_at: datetime, ari: dict[str, Any] | None) -> float:
    """Seconds until a ready Certificate is looked at again: its renewal time or ARI re-check,
    or sooner the next read of its Secret (the operator cannot watch Secrets)."""
    from acmebridge.reconcile import renewal

    wake = renewal.next_wake(renew_at, ari, ctx.now)
    # Spread the Secret checks (±10%, by UID) so certificates created together do not align.
    spread = 0.9 + 0.2 * (int(ctx.uid.replace("-", "")[:8] or "0", 16) / 0xFFFFFFFF)
    return min(wake, ctx.rt.config.secret_check_interval.total_seconds() * spread)


def _placeholder_spec() -> CertificateSpec:
    """A spec for a Certificate whose own spec is unusable, so conditions can still be set."""
    return CertificateSpec.from_body(
        {"secretName": "invalid", "issuerRef": {"name": "invalid"}, "dnsNames": ["invalid.invalid"]}
    )
