"""Names an ACME CA can never validate for a workload, and what the user could use instead.

HTTP-01 proves control of a name by the CA fetching a token from it: the name must lead the CA to
the solver Pod, through an ingress that routes the name into the cluster. A cluster-internal name
(``web.shop.svc.cluster.local``, ``web.shop.svc``, a bare ``web``) leads anyone inside the
cluster to the workload itself, not to a solver, and resolves nowhere outside it; no DNS-01 zone
holds it either, because the cluster's DNS is not a zone the CA queries or the operator updates.
Such a name would only cost an ACME order that fails. Saying so before ordering, with the name and
what would work, is the fix a user can act on.

Pure, and meant for the Certificate reconcile's gate (``Ready=False``, reason
:data:`REASON`) as well as for the workload reconcile's Events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from acmebridge.domain.issuer_spec import Solver
from acmebridge.domain.names import is_ip
from acmebridge.domain.solvers import select_solver

__all__ = ["REASON", "first_unvalidatable", "unvalidatable_name"]

#: the condition and Event reason for a name the CA cannot validate
REASON = "NameNotValidatable"
EXAMPLE_DOMAIN = "mesh.example.com"


def _cluster_internal(name: str, cluster_domain: str) -> bool:
    bare = name.lower().rstrip(".")
    domain = cluster_domain.lower().strip(".")
    if "." not in bare:
        return True  # a single label resolves only through the Pod's search domains
    if domain and (bare == domain or bare.endswith("." + domain)):
        return True
    return bare.rsplit(".", 1)[-1] in ("svc", "local", "localhost")


def _suggestion(name: str, cluster_domain: str) -> str:
    """``web.shop.svc.cluster.local`` -> ``web.shop.mesh.example.com``."""
    bare = name.lower().rstrip(".").removeprefix("*.")
    domain = cluster_domain.lower().strip(".")
    if domain and bare.endswith("." + domain):
        bare = bare[: -len(domain) - 1]
    labels = bare.split(".")
    if "svc" in labels:
        labels = labels[: labels.index("svc")]
    labels = [label for label in labels if label not in ("local", "localhost")] or ["web"]
    return ".".join([*labels[:2], EXAMPLE_DOMAIN])


def unvalidatable_name(
    identifier: str,
    solvers: Sequence[Solver],
    *,
    cluster_domain: str = "cluster.local",
    certificate_labels: Mapping[str, str] | None = None,
) -> str | None:
    """Pure: why the CA cannot validate ``identifier`` with these solvers, or None if it can.

    The message names the identifier and says what would work: a name under a domain an
    ingress routes (HTTP-01) or in a DNS-01 zone. ``solvers`` are the issuer's
    ``spec.acme.solvers`` (``AcmeIssuerSpec.solvers``); ``certificate_labels`` the Certificate's
    labels, which solver selectors may match.
    """
    if is_ip(identifier):
        address = ipaddress.ip_address(identifier)
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            return (
                f"{identifier} is a loopback, link-local or unspecified address, which points "
                "at whoever connects, never at a solver: the CA cannot validate it"
            )
        return None
    wildcard = identifier.startswith("*.")
    if _cluster_internal(identifier, cluster_domain):
        return (
            f"{identifier!r} is a cluster-internal name: inside the cluster it leads to the "
            "workload itself, not to a solver, and the CA cannot resolve it, so no ACME challenge "
            "can prove it. Use a name under a domain your ingress routes into the cluster "
            f"(HTTP-01), such as {_suggestion(identifier, cluster_domain)!r}, or a name in a "
            "DNS-01 zone, and let in-cluster clients resolve that name to the Service"
        )
    selection = select_solver(
        solvers,
        identifier_type="dns",
        identifier=identifier,
        wildcard=wildcard,
        certificate_labels=certificate_labels or {},
    )
    if selection is None:
        if wildcard and any(s.http01 is not None for s in solvers):
            return (
                f"{identifier!r} is a wildcard, which HTTP-01 cannot validate (RFC 8555 §7.1.3): "
                "add a dns01 solver whose selector covers its zone, or list the names themselves"
            )
        return (
            f"no solver of the issuer takes {identifier!r}: add one whose selector (dnsNames, "
            "dnsZones or matchLabels) matches it, or a solver without a selector"
        )
    return None


def first_unvalidatable(
    identifiers: Sequence[str],
    solvers: Sequence[Solver],
    *,
    cluster_domain: str = "cluster.local",
    certificate_labels: Mapping[str, str] | None = None,
) -> str | None:
    """Pure: the message for the first identifier the CA cannot validate, or None."""
    for identifier in identifiers:
        message = unvalidatable_name(
            identifier,
            solvers,
            cluster_domain=cluster_domain,
            certificate_labels=certificate_labels,
        )
        if message is not None:
            return message
    return None
