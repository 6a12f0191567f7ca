"""DNS-01 challenges through RFC 2136: add the TXT value, check every authoritative server, and
remove exactly that value afterwards (after success, failure, a restart, or deletion mid-order).

Crash safety: before the first value is added the Certificate gets the finalizer
``acmebridge.io/dns01-cleanup`` and the journal records where the value goes (name after
following a CNAME, zone, server, value), written at once. Whatever happens next, the operator
knows what to remove; the finalizer makes a Certificate deleted while the operator is down wait
for it to remove its records, and it is taken off as soon as they are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acmebridge.adapters import rfc2136
from acmebridge.adapters.kube import ours_path
from acmebridge.domain.dns01 import challenge_name
from acmebridge.domain.errors import DnsProblem, Severity
from acmebridge.domain.issuer_spec import Rfc2136Solver, Solver
from acmebridge.domain.journal import ChallengeRecord, OrderJournal
from acmebridge.reconcile.accounts import Account, AccountError, read_secret_key
from acmebridge.reconcile.context import Ctx
from acmebridge.reconcile.runtime import Runtime

log = logging.getLogger("acmebridge.dns01")

FINALIZER = "acmebridge.io/dns01-cleanup"


@dataclass(frozen=True)
class Placement:
    """Where a TXT value goes: the name (after a followed CNAME), its zone, the update server."""

    name: str
    zone: str
    server: str


def solver_of(account: Account, ch: ChallengeRecord) -> Rfc2136Solver:
    solvers: tuple[Solver, ...] = account.spec.solvers
    index = ch.solver_index or 0
    dns01 = solvers[index].dns01 if index < len(solvers) else None
    if dns01 is None:
        raise DnsProblem(
            f"solver {index} of the issuer is no longer a dns01 solver",
            server="",
            severity=Severity.PERMANENT,
        )
    return dns01


async def update_server(
    rt: Runtime, account: Account, solver: Rfc2136Solver
) -> rfc2136.UpdateServer:
    """The server updates go to, with the TSIG key read from the Issuer's Secret."""
    tsig = None
    ref = solver.tsig_secret_ref
    if solver.tsig_key_name and ref is not None:
        try:
            raw = await read_secret_key(
                rt, account.secret_namespace, ref.name, ref.key, what="TSIG"
            )
        except AccountError as e:
            raise DnsProblem(
                e.message, server=solver.nameserver, severity=Severity.PERMANENT
            ) from e
        if raw is None:
            raise DnsProblem(
                f"TSIG Secret '{account.secret_namespace}/{ref.name}' does not exist",
                server=solver.nameserver,
                severity=Severity.PERMANENT,
            )
        tsig = rfc2136.TsigKey(
            name=solver.tsig_key_name,
            algorithm=solver.tsig_algorithm or "HMACSHA256",
            secret=raw.decode("ascii", "replace").strip(),
        )
    return rfc2136.UpdateServer(solver.nameserver, tsig=tsig, protocol=solver.protocol)


async def place(rt: Runtime, solver: Rfc2136Solver, identifier: str) -> Placement:
    name = challenge_name(identifier)
    resolvers = rt.config.dns01_nameservers
    if solver.cname_strategy == "Follow":
        name = await rt.io(rfc2136.follow_cname, name, nameservers=resolvers)
    zone = await rt.io(rfc2136.find_zone, name, nameservers=resolvers)
    return Placement(name=name, zone=zone, server=solver.nameserver)


async def ensure_finalizer(ctx: Ctx) -> None:
    finalizers = list(ctx.body["metadata"].get("finalizers") or [])
    if FINALIZER in finalizers:
        return
    await _set_finalizers(ctx.rt, ctx.body, [*finalizers, FINALIZER])


async def drop_finalizer(rt: Runtime, body: Mapping[str, Any]) -> dict[str, Any] | None:
    finalizers = list(body["metadata"].get("finalizers") or [])
    if FINALIZER not in finalizers:
        return None
    return await _set_finalizers(rt, body, [f for f in finalizers if f != FINALIZER])


async def _set_finalizers(
    rt: Runtime, body: Mapping[str, Any], finalizers: list[str]
) -> dict[str, Any]:
    meta = body["metadata"]
    path = ours_path("certificates", meta["namespace"], meta["name"])
    # A PUT of the body as read: its resourceVersion makes it fail rather than undo someone
    # else's change (the status subresource is not touched by it).
    new = {**body, "metadata": {**meta, "finalizers": finalizers}}
    written: dict[str, Any] = await rt.io(rt.kube.replace, path, new)
    rt.observe(("certificates", meta["namespace"], meta["name"]), written)
    return written


async def check(rt: Runtime, ch: ChallengeRecord, *, protocol: str) -> tuple[bool, str]:
    """Every server the CA may ask answers the value (``--dns01-nameservers`` overrides)."""
    assert ch.record_name and ch.record_zone and ch.record_value
    servers = rt.config.dns01_nameservers
    if not servers:
        servers = await rt.io(rfc2136.authoritative_servers, ch.record_zone)
    result = await rt.io(
        rfc2136.check_txt, ch.record_name, ch.record_value, servers=servers, protocol=protocol
    )
    return result.complete, result.message()


@dataclass(frozen=True)
class Leftover:
    """A value that could not be removed, and whether trying again may help."""

    what: str
    temporary: bool

    def __str__(self) -> str:
        return self.what


async def remove_records(
    rt: Runtime, account: Account | None, journal: OrderJournal
) -> list[Leftover]:
    """Remove every TXT value the journal says was added; returns what could not be removed."""
    problems: list[Leftover] = []
    for rec in journal.authorizations:
        ch = rec.challenge
        if ch is None or ch.type != "dns-01" or not ch.record_name or not ch.record_value:
            continue
        try:
            if account is None:
                raise DnsProblem(
                    "the issuer is gone, so its TSIG key cannot be read",
                    server=ch.record_server or "",
                    severity=Severity.PERMANENT,
                )
            server = await update_server(rt, account, solver_of(account, ch))
            await rt.io(
                rfc2136.remove_txt,
                server,
                zone=ch.record_zone or "",
                name=ch.record_name,
                value=ch.record_value,
            )
        except DnsProblem as e:
            log.warning("could not remove TXT %s at %s: %s", ch.record_value, ch.record_name, e)
            problems.append(
                Leftover(
                    f"TXT {ch.record_value} at {ch.record_name} (zone {ch.record_zone}, server "
                    f"{ch.record_server}): {e}",
                    temporary=e.severity is Severity.TEMPORARY,
                )
            )
    return problems
