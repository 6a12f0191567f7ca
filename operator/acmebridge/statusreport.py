"""What ``acmebridge status`` shows, computed without IO.

Pure: the functions take Certificates and Events as the API server returns them and return rows
and text; ``cli`` does the reading and printing. A Certificate is explained from its Ready and
Issuing conditions, its failure count, its ACME journal (``status.order``) and its newest Warning
Events, which together say what ``kubectl describe`` would, in a few lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acmebridge.domain.conditions import get_condition

#: Warning Events shown per certificate that is not ready, newest last
EVENTS_SHOWN = 3


@dataclass(frozen=True)
class CertificateRow:
    """One Certificate as ``status`` shows it; ``problems`` is empty exactly when it is ready."""

    namespace: str
    name: str
    ready: str
    reason: str
    secret: str
    issuer: str
    not_after: str
    renewal: str
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "reason": self.reason,
            "secretName": self.secret,
            "issuer": self.issuer,
            "notAfter": self.not_after or None,
            "renewalTime": self.renewal or None,
            "problems": list(self.problems),
        }


def events_about(
    obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The Events whose involvedObject is ``obj`` (by UID), oldest first."""
    uid = (obj.get("metadata") or {}).get("uid")
    mine = [dict(e) for e in events if uid and (e.get("involvedObject") or {}).get("uid") == uid]
    mine.sort(key=_event_time)
    return mine


def _event_time(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(
        event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp") or ""
    )


def is_ready(cert: Mapping[str, Any]) -> bool:
    """Ready=True, for the Certificate's current generation (an edited spec is not ready yet)."""
    meta = cert.get("metadata") or {}
    ready = get_condition(((cert.get("status") or {}).get("conditions")) or [], "Ready")
    if ready is None or ready.status != "True":
        return False
    generation = meta.get("generation")
    return ready.observed_generation in (None, 0) or generation in (None, ready.observed_generation)


def why_not_ready(cert: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences explaining a Certificate that is not ready, most telling first.

    The Ready and Issuing conditions say what the operator decided; the failure count and the
    ACME order say where an issuance stands; the latest Warning Events say what went wrong,
    with how often it happened.
    """
    status = cert.get("status") or {}
    conds = status.get("conditions") or []
    lines: list[str] = []
    ready = get_condition(conds, "Ready")
    issuing = get_condition(conds, "Issuing")
    if ready is None:
        # During a first issuance only Issuing is set, and says where it stands (below).
        if issuing is None:
            lines.append(
                "no Ready condition yet: is the operator running and watching this namespace?"
            )
    elif ready.status != "True":
        lines.append(f"Ready={ready.status} {ready.reason}: {ready.message}")
    elif not is_ready(cert):
        lines.append(
            f"the spec changed (generation {(cert.get('metadata') or {}).get('generation')}) "
            f"and the operator has not acted on it yet (Ready is for generation "
            f"{ready.observed_generation})"
        )
    if issuing is not None:
        lines.append(f"Issuing={issuing.status} {issuing.reason}: {issuing.message}")
    failures = int(status.get("failedIssuanceAttempts") or 0)
    if failures:
        last = status.get("lastFailureTime") or "unknown"
        lines.append(f"{failures} failed issuance attempt(s), the last at {last}")
    lines += _order_lines(status.get("order"))
    warnings = [e for e in events_about(cert, events) if e.get("type") == "Warning"]
    for e in warnings[-EVENTS_SHOWN:]:
        count = int(e.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"event {e.get('reason')}{times}: {e.get('message')}")
    return lines


def _order_lines(order: Any) -> list[str]:
    if not isinstance(order, Mapping) or not order.get("url"):
        return []
    lines = [f"ACME order {order['url']} is {order.get('state') or 'unknown'}"]
    for authz in order.get("authorizations") or []:
        if not isinstance(authz, Mapping):
            continue
        challenge = authz.get("challenge") or {}
        state = challenge.get("state") or authz.get("state") or "unknown"
        error = challenge.get("error")
        detail = f": {error}" if error else ""
        lines.append(
            f"  {authz.get('identifier')}: {challenge.get('type', 'authorization')} {state}{detail}"
        )
    return lines


def certificate_row(cert: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> CertificateRow:
    meta = cert.get("metadata") or {}
    spec = cert.get("spec") or {}
    status = cert.get("status") or {}
    ready = get_condition(status.get("conditions") or [], "Ready")
    ref = spec.get("issuerRef") or {}
    ok = is_ready(cert)
    return CertificateRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        ready=ready.status if ready else "Unknown",
        reason=ready.reason if ready else "",
        secret=str(spec.get("secretName") or ""),
        issuer=f"{ref.get('kind') or 'Issuer'}/{ref.get('name', '')}",
        not_after=str(status.get("notAfter") or ""),
        renewal=str(status.get("renewalTime") or ""),
        problems=() if ok else tuple(why_not_ready(cert, events)),
    )


def status_table(rows: Sequence[CertificateRow], *, show_namespace: bool) -> str:
    """Aligned columns like kubectl's, then one paragraph per Certificate that is not ready."""
    head = ["NAME", "READY", "REASON", "SECRET", "ISSUER", "NOT AFTER", "RENEWAL"]
    table = [head]
    for r in rows:
        table.append(
            [
                r.name,
                r.ready,
                r.reason or "-",
                r.secret,
                r.issuer,
                r.not_after or "-",
                r.renewal or "-",
            ]
        )
    if show_namespace:
        table = [
            ["NAMESPACE", *table[0]],
            *[[r.namespace, *t] for r, t in zip(rows, table[1:], strict=True)],
        ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    for r in rows:
        if r.problems:
            out.append("")
            out.append(f"Certificate {r.namespace}/{r.name} is not ready:")
            out += [f"  {line}" for line in r.problems]
    return "\n".join(out)
