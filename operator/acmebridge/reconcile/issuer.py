"""Issuer and ClusterIssuer reconcile: register the ACME account, publish what the server offers.

``status.acme`` shows the account URI and the directory's capabilities (ARI, profiles, whether
external account binding is required, terms of service), so a user can see why a feature is or
is not used. ``Ready`` says whether Certificates can use the issuer, with a reason to act on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from acmebridge.domain.conditions import Condition, get_condition, set_condition
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable, TLSTrustError, short_type
from acmebridge.domain.schedule import backoff_delay
from acmebridge.reconcile.accounts import Account, AccountError, ensure_account
from acmebridge.reconcile.runtime import ObjectKey, Runtime

log = logging.getLogger("acmebridge.issuer")


def _acme_status(account: Account) -> dict[str, Any]:
    d = account.directory
    return {
        "uri": account.ref.uri,
        "lastRegisteredEmail": account.spec.email or None,
        "directory": {
            "ari": d.renewal_info is not None,
            "profiles": sorted(d.profiles),
            "profileDescriptions": dict(d.profiles) or None,
            "externalAccountRequired": d.external_account_required,
            "termsOfService": d.terms_of_service,
            "website": d.website,
        },
    }


async def reconcile_issuer(
    rt: Runtime, key: ObjectKey, accounts: dict[ObjectKey, Account], failures: dict[ObjectKey, int]
) -> float | None:
    body = rt.cache.get(key)
    if body is None:
        accounts.pop(key, None)
        failures.pop(key, None)
        return None
    now = rt.clock()
    generation = int(body["metadata"].get("generation", 0))
    status: Mapping[str, Any] = body.get("status") or {}
    delay: float | None = None
    acme_status: dict[str, Any] | None = None
    try:
        account = await ensure_account(rt, key, body, accounts)
        cond = Condition(
            type="Ready",
            status="True",
            reason="ACMEAccountRegistered",
            message=f"The ACME account is registered with {account.spec.server}",
            observed_generation=generation,
            last_transition_time=now,
        )
        acme_status = _acme_status(account)
        failures.pop(key, None)
    except AccountError as e:
        cond = _failed(e.reason, e.message, generation, now)
        delay = _retry(failures, key, rt) if e.retry else None
    except TLSTrustError as e:
        cond = _failed("TLSError", e.detail, generation, now)
        delay = _retry(failures, key, rt)
    except AcmeUnavailable as e:
        server = ((body.get("spec") or {}).get("acme") or {}).get("server", "")
        cond = _failed("ServerUnreachable", f"{server}: {e.detail}", generation, now)
        delay = _retry(failures, key, rt)
    except AcmeProblem as e:
        reason = "ErrRegisterACMEAccount"
        if short_type(e.type) == "externalAccountRequired":
            reason = "ExternalAccountRequired"
        message = f"the ACME server refused the account: {e.detail} ({e.type})"
        cond = _failed(reason, message + _binding_hint(body, reason), generation, now)
        delay = _retry(failures, key, rt)
    previous = get_condition(status.get("conditions") or [], "Ready")
    changed = (
        previous is None
        or previous.status != cond.status
        or previous.reason != cond.reason
        or previous.message != cond.message
        or previous.observed_generation != generation
        or (acme_status is not None and status.get("acme") != _prune(acme_status))
    )
    if changed:
        patch: dict[str, Any] = {"conditions": set_condition(status.get("conditions") or [], cond)}
        if acme_status is not None:
            patch["acme"] = acme_status
        await rt.patch_status(key, patch)
        await rt.event(
            body, "Normal" if cond.status == "True" else "Warning", cond.reason, cond.message
        )
        log.info(
            "%s %s/%s: Ready=%s %s: %s",
            body.get("kind"),
            key[1],
            key[2],
            cond.status,
            cond.reason,
            cond.message,
        )
        # Read after the write: a Certificate that registered while the status was being
        # written may have read the old status from the cache, and must be woken to read it
        # again (a set fetched before the write could miss it, or be a fresh empty one).
        for dep in list(rt.dependents.get(key, ())):
            rt.wake(dep, 0.0)
    rt.metrics.issuer(rt.cache.get(key), key)
    return delay


def _binding_hint(body: Mapping[str, Any], reason: str) -> str:
    """What to check about external account binding when the server refused the account.

    CAs word a refused binding very differently (step-ca answers a wrong MAC key with a bare
    "internal error"), so the condition names the binding that was sent and where its key lives.
    """
    eab = ((body.get("spec") or {}).get("acme") or {}).get("externalAccountBinding")
    if not isinstance(eab, Mapping):
        if reason == "ExternalAccountRequired":
            return (
                "; set spec.acme.externalAccountBinding to the key ID and MAC key the CA "
                "issued for this account"
            )
        return ""
    ref = eab.get("keySecretRef") or {}
    return (
        f"; the account was sent with externalAccountBinding keyID '{eab.get('keyID')}': check "
        f"that the CA issued this key ID, that Secret '{ref.get('name')}' key "
        f"'{ref.get('key')}' holds its MAC key as the CA gave it, and that no other account "
        "used the key before (step-ca, for one, accepts each key once)"
    )


def _prune(d: Mapping[str, Any]) -> dict[str, Any]:
    """The status as the API server stores it: keys with null values dropped (merge patch)."""
    return {k: _prune(v) if isinstance(v, Mapping) else v for k, v in d.items() if v is not None}


def _failed(reason: str, message: str, generation: int, now: Any) -> Condition:
    return Condition(
        type="Ready",
        status="False",
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now,
    )


def _retry(failures: dict[ObjectKey, int], key: ObjectKey, rt: Runtime) -> float:
    n = failures.get(key, 0) + 1
    failures[key] = n
    return backoff_delay(n, cap=rt.config.backoff_cap, seed="/".join(key)).total_seconds()
