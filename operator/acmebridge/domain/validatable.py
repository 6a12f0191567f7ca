"""Names an ACME CA can never validate for a workload, and what the user could use instead.

HTTP-01 proves control of a name by the CA fetching a token from it: the name must lead the CA to
the solver Pod, through an ingress that routes the name into the cluster. A cluster-internal name
(``web.shop.svc.cluster.local``, ``web.shop.svc``, a bare ``web``) leads anyone inside the
cluster to the workload itself, not to a solver, and resolves nowhere outside it; no DNS-01 zone
holds it either, because the cluster's DNS is not a zone the CA queries or the operator updates.
Such a name would only cost an ACME order that fails. Saying so before ordering, with the name and
what would work, is the fix a user can act on.

Pure. The Certificate's plan refuses cluster-internal names before ordering
(``domain.order_steps.names_problem``); the workload reconcile names every kind of name here in
an Event, loopback addresses included (a Certificate leaves those to the CA: a CA on the same host
as its solver, as in a development setup, can validate one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from acmebridge.domain.issuer_spec import Solver
from acmebridge.domain.names import is_ip
from acmebridge.domain.reasons import Reason
from acmebridge.domain.solvers import no_solver_message, select_solver

__all__ = ["REASON", "cluster_internal_message", "first_unvalidatable", "unvalidatable_name"]

#: the condition and Event reason for a name the CA cannot validate
REASON = Reason.NAME_NOT_VALIDATABLE
EXAMPLE_DOMAIN = "mesh.example.com"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"


def _cluster_internal(name: str, cluster_domain: str) -> bool:
    bare = name.lower().rstrip(".")
    if "." not in bare:
        return True  # a single label resolves only through the Pod's search domains
    # The configured domain, and Kubernetes' default one whatever the configuration says.
    for domain in {cluster_domain.lower().strip("."), DEFAULT_CLUSTER_DOMAIN}:
        if domain and (bare == domain or bare.endswith("." + domain)):
            return True
    # `.local` alone is not enough: many internal networks (Active Directory's `corp.local`)
    # serve real names under it, and their CAs resolve them.
    return bare.rsplit(".", 1)[-1] in ("svc", "localhost")


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


def cluster_internal_message(name: str, cluster_domain: str) -> str | None:
    """Pure: why a cluster-internal DNS name can never be validated, with a name that could,
    or None for any other name."""
    if not _cluster_internal(name, cluster_domain):
        return None
    return (
        f"{name!r} is a cluster-internal name: inside the cluster it leads to the "
        "workload itself, not to a solver, and the CA cannot resolve it, so no ACME challenge "
        "can prove it. Use a name under a domain your ingress routes into the cluster "
        f"(HTTP-01), such as {_suggestion(name, cluster_domain)!r}, or a name in a "
        "DNS-01 zone, and let in-cluster clients resolve that name to the Service"
    )


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
    internal = cluster_internal_message(identifier, cluster_domain)
    if internal is not None:
        return internal
    selection = select_solver(
        solvers,
        identifier_type="dns",
        identifier=identifier,
        wildcard=wildcard,
        certificate_labels=certificate_labels or {},
    )
    if selection is None:
        return no_solver_message(identifier, wildcard=wildcard)
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
