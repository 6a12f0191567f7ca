"""The ``acmebridge`` command: run the operator, serve an HTTP-01 challenge, or operate on objects.

Exit codes fit scripts: 0 success, 1 the command ran and found a problem (a certificate not
ready, a Secret that does not match), 2 bad usage or an unreachable cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from acmebridge.config import OperatorConfig


def _nameservers(text: str) -> list[str]:
    """``host[:port][,host[:port]...]``, each checked now rather than at the first DNS-01 order."""
    from acmebridge.domain.dns01 import parse_server

    servers = [part.strip() for part in text.split(",") if part.strip()]
    for server in servers:
        try:
            parse_server(server)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return servers


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the operator against the current kubeconfig or cluster")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    p.add_argument(
        "--peering",
        default=None,
        help="kopf peering name for several replicas (one active); default standalone",
    )
    p.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    p.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    p.add_argument("--cluster-resource-namespace", default=None)
    p.add_argument("--solver-image", default=None, help="image of the HTTP-01 solver Pods")
    p.add_argument(
        "--solver-command",
        default=None,
        help="the solver image's command, comma-separated (default: acmebridge,solve-http01)",
    )
    p.add_argument(
        "--self-check-nameserver",
        action="append",
        default=None,
        help="resolver (host[:port]) for the HTTP-01 self check; repeatable",
    )
    p.add_argument(
        "--dns01-nameservers",
        action="append",
        type=_nameservers,
        default=None,
        metavar="HOST[:PORT],...",
        help="DNS-01: servers the propagation check asks for the TXT record instead of the "
        "zone's authoritative servers, and the resolvers that find the zone; comma-separated "
        "or repeated (default: the zone's own servers, found through the system resolver)",
    )
    p.add_argument("--http01-self-check-port", type=int, default=None)
    p.add_argument(
        "--secret-owner-references",
        action="store_true",
        default=None,
        help="delete a Certificate's Secret with it (off by default)",
    )
    p.add_argument("--backoff-cap", type=float, default=None, help="seconds (default 3600)")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument(
        "--secret-check-interval",
        type=float,
        default=None,
        help="seconds between checks that a ready Certificate's Secret is intact (default 3600)",
    )
    p.add_argument(
        "--order-poll-max",
        type=float,
        default=None,
        help="seconds: the longest interval between looks at an order the CA is validating; "
        "polls start 0.5 s after a challenge is answered and grow with the time waited "
        "(half of it), up to this; the CA's Retry-After wins (default 10)",
    )
    p.add_argument(
        "--ari-recheck-max",
        type=float,
        default=None,
        help="seconds: the longest wait before asking the CA's renewal info again, whatever "
        "its Retry-After says (default 86400)",
    )
    p.add_argument(
        "--allowed-acme-server",
        action="append",
        default=None,
        help="URL prefix or host namespaced Issuers may use; repeatable",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="0 disables /metrics")
    p.add_argument("--metrics-address", default=None, help="address /metrics listens on")
    p.add_argument("--log-format", choices=("text", "json"), default=None)
    p.add_argument("--log-level", default=None)
    p.add_argument("--verbose", action="store_true", help="debug logging")
    _mtls_arguments(p)


def _mtls_arguments(p: argparse.ArgumentParser) -> None:
    """Workload mTLS (docs/mtls.md): off unless --mtls."""
    p.add_argument(
        "--mtls",
        action="store_true",
        default=None,
        help="workload mTLS: serve the admission webhook and keep a Certificate per opted-in "
        "Deployment, StatefulSet and DaemonSet (off by default)",
    )
    p.add_argument("--webhook-address", default=None, help="webhook listen address")
    p.add_argument("--webhook-port", type=int, default=None, help="webhook port (default 9443)")
    p.add_argument(
        "--webhook-service",
        default=None,
        metavar="NAMESPACE/NAME",
        help="the Service the API server calls the webhook through (in a cluster)",
    )
    p.add_argument(
        "--webhook-url",
        default=None,
        help="the URL the API server calls the webhook at, https://host:port (outside a cluster)",
    )
    p.add_argument(
        "--webhook-configuration",
        default=None,
        help="name of the MutatingWebhookConfiguration (default acmebridge)",
    )
    p.add_argument(
        "--webhook-cert-duration",
        type=float,
        default=None,
        help="seconds: lifetime of the webhook's serving certificate (default 90 days)",
    )
    p.add_argument(
        "--workload-dns-names-template",
        default=None,
        help='dns-names for workloads that give none, e.g. "{name}.{namespace}.mesh.example.com"',
    )
    p.add_argument(
        "--workload-duration",
        default=None,
        help="certificate lifetime of workloads without acmebridge.io/duration (default 24h)",
    )
    p.add_argument("--spiffe-trust-domain", default=None, help="default cluster.local")
    p.add_argument("--cluster-domain", default=None, help="default cluster.local")


def _mtls_overrides(args: argparse.Namespace) -> dict[str, object]:
    from acmebridge.domain.durations import parse_go_duration

    overrides: dict[str, object] = {}
    for field in (
        "mtls",
        "webhook_address",
        "webhook_port",
        "webhook_service",
        "webhook_url",
        "webhook_configuration",
        "workload_dns_names_template",
        "spiffe_trust_domain",
        "cluster_domain",
    ):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "webhook_cert_duration", None) is not None:
        overrides["webhook_cert_duration"] = timedelta(seconds=args.webhook_cert_duration)
    if getattr(args, "workload_duration", None) is not None:
        overrides["workload_duration"] = parse_go_duration(args.workload_duration)
    return overrides


def _config(args: argparse.Namespace) -> OperatorConfig:
    cfg = OperatorConfig.from_env()
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["namespaces"] = tuple(args.namespace)
    for flag, field in (
        ("cluster_resource_namespace", "cluster_resource_namespace"),
        ("solver_image", "solver_image"),
        ("http01_self_check_port", "http01_self_check_port"),
        ("secret_owner_references", "secret_owner_references"),
        ("concurrency", "concurrency"),
        ("metrics_port", "metrics_port"),
        ("metrics_address", "metrics_address"),
        ("log_format", "log_format"),
        ("log_level", "log_level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    if args.self_check_nameserver:
        overrides["self_check_nameservers"] = tuple(args.self_check_nameserver)
    if args.dns01_nameservers:
        overrides["dns01_nameservers"] = tuple(s for group in args.dns01_nameservers for s in group)
    if args.allowed_acme_server:
        overrides["allowed_acme_servers"] = tuple(args.allowed_acme_server)
    if args.backoff_cap is not None:
        overrides["backoff_cap"] = timedelta(seconds=args.backoff_cap)
    if args.secret_check_interval is not None:
        overrides["secret_check_interval"] = timedelta(seconds=args.secret_check_interval)
    if args.solver_command:
        overrides["solver_command"] = tuple(p for p in args.solver_command.split(",") if p)
    if args.order_poll_max is not None:
        overrides["order_poll_max"] = timedelta(seconds=args.order_poll_max)
    if args.ari_recheck_max is not None:
        overrides["ari_recheck_max"] = timedelta(seconds=args.ari_recheck_max)
    if args.verbose:
        overrides["log_level"] = "DEBUG"
    overrides.update(_mtls_overrides(args))
    return replace(cfg, **overrides)  # type: ignore[arg-type]


def _peering_ready(name: str, namespaces: Sequence[str]) -> bool:
    """Create the kopf peering object before kopf starts (adapters/peering.py says why)."""
    from acmebridge.adapters import peering
    from acmebridge.adapters.kube import Kube, api_client

    log = logging.getLogger("acmebridge")
    try:
        skipped = peering.ensure(Kube(api_client()), name, namespaces)
    except peering.PeeringError as e:
        log.error("%s", e)
        return False
    if skipped:
        log.warning(
            "no peering object %s in %s (a pattern, or not created yet): kopf keeps this "
            "replica paused there until one exists",
            name,
            ", ".join(skipped),
        )
    return True


def _log_start(cfg: OperatorConfig, peering: str | None) -> None:
    """One line that says what this process will do: the first thing to read in its log."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("acmebridge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "unknown"
    logging.getLogger("acmebridge").info(
        "acmebridge %s starting: namespaces %s, %s, concurrency %d, metrics %s, mTLS webhook %s",
        release,
        ", ".join(cfg.namespaces) or "all",
        f"peering {peering}" if peering else "standalone",
        cfg.concurrency,
        f"on port {cfg.metrics_port}" if cfg.metrics_port else "off",
        f"on port {cfg.webhook_port}" if cfg.mtls else "off",
    )


def cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from acmebridge.handlers import operator as handlers
    from acmebridge.logs import configure_logging

    cfg = _config(args)
    configure_logging(cfg.log_format, cfg.log_level)
    _log_start(cfg, args.peering)
    metrics = None
    if cfg.metrics_port:
        from acmebridge.metrics import PrometheusMetrics

        metrics = PrometheusMetrics.serve(cfg.metrics_address, cfg.metrics_port)
    if args.peering is not None and not _peering_ready(args.peering, cfg.namespaces):
        return 1
    handlers.install(handlers.Operator(cfg, metrics))
    if cfg.mtls:
        from acmebridge.handlers import mtls

        mtls.install(cfg)
    # uvloop (libuv) runs the event loop's own work (callbacks, timers, sockets, wake-ups from
    # the I/O threads) at a fraction of asyncio's CPU; kopf uses it the same way when present.
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            kopf.operator(
                clusterwide=not cfg.namespaces,
                namespaces=list(cfg.namespaces),
                standalone=args.peering is None,
                peering_name=args.peering,
                priority=args.priority,
                liveness_endpoint=args.liveness,
            )
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "solve-http01":
        from acmebridge import solver

        return solver.main(argv[1:])
    parser = argparse.ArgumentParser(prog="acmebridge", description="ACME for your own PKI")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    sub.add_parser("solve-http01", help="serve one HTTP-01 challenge (runs in solver Pods)")
    from acmebridge import cli

    cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    try:
        return cli.dispatch(args)
    except cli.CliError as e:
        print(f"acmebridge: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
