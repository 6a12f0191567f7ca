"""Issuer and ClusterIssuer reconcile: register the ACME account, publish what the server offers.

``status.acme`` shows the account URI and the directory's capabilities (ARI, profiles, whether
external account binding is required, terms of service), so a user can see why a feature is or
is not used. ``Ready`` says whether Certificates can use the issuer, with a reason to act on
(``domain.issuer_status`` decides it). A server that cannot be reached is an outage shared by
everyone using it (``reconcile.servers``): the Issuer waits for the server's probe.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from acmebridge.adapters import acme_client as acme
from acmebridge.domain.conditions import get_condition, set_condition
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable, TLSTrustError
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.issuer_status import AccountOutcome, is_news, ready_condition
from acmebridge.domain.schedule import backoff_delay
from acmebridge.reconcile.accounts import Account, AccountError, Accounts, parse_issuer
from acmebridge.reconcile.runtime import ObjectKey, Runtime

log = logging.getLogger("acmebridge.issuer")
# An Issuer waiting for its server is woken by the server's probe; this is a safety net.
SERVER_WAIT_FALLBACK = 600.0


def acme_status(account: Account) -> dict[str, Any]:
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
    rt: Runtime, key: ObjectKey, accounts: Accounts, failures: dict[ObjectKey, int]
) -> float | None:
    body = rt.cache.get(key)
    if body is None:
        accounts.forget(key)
        failures.pop(key, None)
        return None
    generation = int(body["metadata"].get("generation", 0))
    status: Mapping[str, Any] = body.get("status") or {}
    outcome, account, delay = await _register(rt, key, body, accounts, failures)
    cond = ready_condition(outcome, body.get("spec") or {}, generation=generation, now=rt.clock())
    new_acme = acme_status(account) if account is not None else None
    previous = get_condition(status.get("conditions") or [], "Ready")
    if is_news(previous, cond, stored_acme=status.get("acme"), acme_status=new_acme):
        patch: dict[str, Any] = {"conditions": set_condition(status.get("conditions") or [], cond)}
        if new_acme is not None:
            patch["acme"] = new_acme
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


async def _register(
    rt: Runtime,
    key: ObjectKey,
    body: Mapping[str, Any],
    accounts: Accounts,
    failures: dict[ObjectKey, int],
) -> tuple[AccountOutcome, Account | None, float | None]:
    server = str(((body.get("spec") or {}).get("acme") or {}).get("server", ""))
    outage = rt.health.outage(server) if server else None
    if outage is not None:
        rt.health.wait(server, key)
        return (
            AccountOutcome("unavailable", server=server, message=outage.detail),
            None,
            (SERVER_WAIT_FALLBACK),
        )
    try:
        account = await accounts.ensure(rt, key, body)
    except AccountError as e:
        delay = _retry(failures, key, rt) if e.retry else None
        return AccountOutcome("account", e.reason, e.message, server), None, delay
    except TLSTrustError as e:
        return AccountOutcome("tls", "TLSError", e.detail, server), None, _retry(failures, key, rt)
    except AcmeUnavailable as e:
        spec = parse_issuer(body)
        rt.health.report(server, e.detail, probe=lambda: rt.io(_probe, spec), waiter=key)
        return (
            AccountOutcome("unavailable", server=server, message=e.detail),
            None,
            (SERVER_WAIT_FALLBACK),
        )
    except AcmeProblem as e:
        outcome = AccountOutcome("refused", e.type, e.detail, server)
        return outcome, None, _retry(failures, key, rt)
    failures.pop(key, None)
    return AccountOutcome("registered", server=account.spec.server), account, None


def _probe(spec: AcmeIssuerSpec) -> None:
    """Fetch the directory once with the Issuer's trust settings (the server is down)."""
    with acme.AcmeSession(
        spec.server, ca_bundle=spec.ca_bundle, skip_tls_verify=spec.skip_tls_verify
    ) as session:
        session.directory()


def _retry(failures: dict[ObjectKey, int], key: ObjectKey, rt: Runtime) -> float:
    n = failures.get(key, 0) + 1
    failures[key] = n
    return backoff_delay(n, cap=rt.config.backoff_cap, seed="/".join(key)).total_seconds()
