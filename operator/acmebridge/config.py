"""Every operator setting in one frozen object, read from flags and ``ACMEBRIDGE_*`` variables.

One place for the knobs keeps the chart's values, the CLI and the docs in step: each field here
has a flag in ``__main__`` and a value in the Helm chart of the same meaning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_SOLVER_IMAGE = "ghcr.io/acmebridge/acmebridge:0.1.0"


def named_namespaces(namespaces: Sequence[str]) -> list[str]:
    """The served namespaces given by name. kopf also takes glob patterns (``apps-*``,
    ``!kube-*``) and resolves them itself against the namespaces that exist."""
    return [n for n in namespaces if not any(c in n for c in "*?[!,")]


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator is allowed to do and how it behaves; immutable for a run."""

    #: where ClusterIssuers keep their account-key and EAB Secrets (cert-manager's name)
    cluster_resource_namespace: str = "acmebridge"
    #: namespaces watched; empty means all namespaces
    namespaces: tuple[str, ...] = ()
    #: image of the HTTP-01 solver Pods: by default the operator's own
    solver_image: str = DEFAULT_SOLVER_IMAGE
    #: the command the solver image runs (its entrypoint)
    solver_command: tuple[str, ...] = ("acmebridge", "solve-http01")
    #: add an ownerReference from each TLS Secret to its Certificate (off as in cert-manager:
    #: deleting a Certificate must not take a serving certificate away from running Pods)
    secret_owner_references: bool = False
    #: upper bound of the failure backoff
    backoff_cap: timedelta = timedelta(hours=1)
    #: parallel reconciles (and threads for the synchronous ACME and Kubernetes clients)
    concurrency: int = 8
    #: the port the ACME server validates HTTP-01 on (80 in real networks)
    http01_self_check_port: int = 80
    #: resolvers for the HTTP-01 self check; empty means the system resolver
    self_check_nameservers: tuple[str, ...] = ()
    #: DNS-01: servers (host[:port]) the propagation check asks for the TXT record instead of
    #: the zone's authoritative servers, and the resolvers that find the zone and its servers.
    #: Empty: the zone's own servers (port 53), found through the system's resolvers
    dns01_nameservers: tuple[str, ...] = ()
    #: ACME servers namespaced Issuers may use (URL prefixes or host names); empty allows all
    allowed_acme_servers: tuple[str, ...] = ()
    #: the longest interval between looks at an order the CA is validating or finalizing: polls
    #: start half a second after answering and grow with the time waited, up to this
    order_poll_max: timedelta = timedelta(seconds=10)
    #: how often a ready Certificate's Secret is read again to catch a deleted or edited Secret.
    #: The operator may not list or watch Secrets (least privilege), so this is how it notices.
    secret_check_interval: timedelta = timedelta(hours=1)
    #: the longest wait before asking the CA's renewalInfo (RFC 9773) again, whatever its
    #: Retry-After says: a CA that moves a window earlier (a revocation coming) is seen this soon
    ari_recheck_max: timedelta = timedelta(hours=24)
    #: metrics listener
    metrics_port: int = 9402
    metrics_address: str = "0.0.0.0"
    log_format: str = "text"
    log_level: str = "INFO"
    #: workload mTLS (docs/mtls.md): watch Deployments, StatefulSets, DaemonSets and Namespaces,
    #: serve the admission webhook, keep one Certificate per opted-in workload
    mtls: bool = False
    #: where the admission webhook listens
    webhook_address: str = "0.0.0.0"
    webhook_port: int = 9443
    #: how the API server reaches the webhook: the Service "<namespace>/<name>" in the cluster,
    #: or a URL (https://host:port) when the operator runs outside it
    webhook_service: str = ""
    webhook_url: str = ""
    #: the MutatingWebhookConfiguration whose caBundle the operator keeps; its serving
    #: material lives in the Secret "<name>-webhook-tls" in cluster_resource_namespace
    webhook_configuration: str = "acmebridge"
    #: lifetime of the webhook's serving certificate (renewed at two thirds)
    webhook_cert_duration: timedelta = timedelta(days=90)
    #: dns-names template for workloads whose annotations and issuer give none
    workload_dns_names_template: str = ""
    #: certificate lifetime for workloads without acmebridge.io/duration
    workload_duration: timedelta = timedelta(hours=24)
    #: SPIFFE trust domain of acmebridge.io/spiffe URI SANs
    spiffe_trust_domain: str = "cluster.local"
    #: the cluster's DNS domain: names under it cannot be validated by an ACME CA
    cluster_domain: str = "cluster.local"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Reads ``ACMEBRIDGE_*`` variables; flags override these in ``__main__``."""
        e = os.environ if env is None else env
        d = cls()

        def tup(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = e.get(name)
            if raw is None:
                return default
            return tuple(p.strip() for p in raw.split(",") if p.strip())

        return cls(
            cluster_resource_namespace=e.get(
                "ACMEBRIDGE_CLUSTER_RESOURCE_NAMESPACE", d.cluster_resource_namespace
            ),
            namespaces=tup("ACMEBRIDGE_NAMESPACES", d.namespaces),
            solver_image=e.get("ACMEBRIDGE_SOLVER_IMAGE", d.solver_image),
            solver_command=tup("ACMEBRIDGE_SOLVER_COMMAND", d.solver_command),
            secret_owner_references=e.get("ACMEBRIDGE_SECRET_OWNER_REFERENCES", "false").lower()
            in ("1", "true", "yes"),
            backoff_cap=timedelta(
                seconds=float(
                    e.get("ACMEBRIDGE_BACKOFF_CAP_SECONDS", d.backoff_cap.total_seconds())
                )
            ),
            concurrency=int(e.get("ACMEBRIDGE_CONCURRENCY", d.concurrency)),
            http01_self_check_port=int(
                e.get("ACMEBRIDGE_HTTP01_SELF_CHECK_PORT", d.http01_self_check_port)
            ),
            self_check_nameservers=tup(
                "ACMEBRIDGE_SELF_CHECK_NAMESERVERS", d.self_check_nameservers
            ),
            dns01_nameservers=tup("ACMEBRIDGE_DNS01_NAMESERVERS", d.dns01_nameservers),
            allowed_acme_servers=tup("ACMEBRIDGE_ALLOWED_ACME_SERVERS", d.allowed_acme_servers),
            secret_check_interval=timedelta(
                seconds=float(
                    e.get(
                        "ACMEBRIDGE_SECRET_CHECK_INTERVAL_SECONDS",
                        d.secret_check_interval.total_seconds(),
                    )
                )
            ),
            order_poll_max=timedelta(
                seconds=float(
                    e.get("ACMEBRIDGE_ORDER_POLL_MAX_SECONDS", d.order_poll_max.total_seconds())
                )
            ),
            ari_recheck_max=timedelta(
                seconds=float(
                    e.get("ACMEBRIDGE_ARI_RECHECK_MAX_SECONDS", d.ari_recheck_max.total_seconds())
                )
            ),
            metrics_port=int(e.get("ACMEBRIDGE_METRICS_PORT", d.metrics_port)),
            metrics_address=e.get("ACMEBRIDGE_METRICS_ADDRESS", d.metrics_address),
            log_format=e.get("ACMEBRIDGE_LOG_FORMAT", d.log_format),
            log_level=e.get("ACMEBRIDGE_LOG_LEVEL", d.log_level),
            mtls=e.get("ACMEBRIDGE_MTLS", "false").lower() in ("1", "true", "yes"),
            webhook_address=e.get("ACMEBRIDGE_WEBHOOK_ADDRESS", d.webhook_address),
            webhook_port=int(e.get("ACMEBRIDGE_WEBHOOK_PORT", d.webhook_port)),
            webhook_service=e.get("ACMEBRIDGE_WEBHOOK_SERVICE", d.webhook_service),
            webhook_url=e.get("ACMEBRIDGE_WEBHOOK_URL", d.webhook_url),
            webhook_configuration=e.get(
                "ACMEBRIDGE_WEBHOOK_CONFIGURATION", d.webhook_configuration
            ),
            webhook_cert_duration=timedelta(
                seconds=float(
                    e.get(
                        "ACMEBRIDGE_WEBHOOK_CERT_DURATION_SECONDS",
                        d.webhook_cert_duration.total_seconds(),
                    )
                )
            ),
            workload_dns_names_template=e.get(
                "ACMEBRIDGE_WORKLOAD_DNS_NAMES_TEMPLATE", d.workload_dns_names_template
            ),
            workload_duration=timedelta(
                seconds=float(
                    e.get(
                        "ACMEBRIDGE_WORKLOAD_DURATION_SECONDS", d.workload_duration.total_seconds()
                    )
                )
            ),
            spiffe_trust_domain=e.get("ACMEBRIDGE_SPIFFE_TRUST_DOMAIN", d.spiffe_trust_domain),
            cluster_domain=e.get("ACMEBRIDGE_CLUSTER_DOMAIN", d.cluster_domain),
        )
