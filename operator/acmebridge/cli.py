"""Day-2 commands on the current kubeconfig: ``status``, ``renew``, ``inspect secret``.

Like cmctl: ``renew`` sets the ``Issuing`` condition (reason ManuallyTriggered) and the operator
does the rest; ``status`` explains from status and Events why a certificate is not ready;
``inspect secret`` decodes a TLS Secret and checks it against its Certificate. What they show is
computed in ``statusreport`` and ``secretreport`` (pure); this module reads and prints.

Exit codes, for scripts: 0 all good; 1 the command ran and found a problem (a Certificate not
ready, a Secret that does not match, an object not found); 2 bad usage, or the cluster could not
be asked (no kubeconfig, unreachable API server, permission refused, CRDs not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from acmebridge import secretreport, statusreport
from acmebridge.domain.conditions import Condition, set_condition
from acmebridge.domain.reasons import Reason

OK, PROBLEM, USAGE = 0, 1, 2

#: the reason ``renew`` sets on the Issuing condition; the operator's trigger looks for it
MANUAL_REASON = Reason.MANUALLY_TRIGGERED


class CliError(Exception):
    """Usage or connection error (exit 2)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser(
        "status",
        help="certificates and, for any not ready, why",
        description="List Certificates; for each one not ready, say why (conditions, the ACME "
        "order, recent Warning Events). Exit 1 when any is not ready.",
    )
    _cluster_flags(st)
    scope = st.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default=None)
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    st.add_argument("name", nargs="?")
    rn = sub.add_parser(
        "renew",
        help="re-issue certificates now",
        description="Ask the operator to re-issue these Certificates now (sets Issuing=True, "
        f"reason {MANUAL_REASON}). Exit 1 when one does not exist.",
    )
    _cluster_flags(rn)
    rn.add_argument("-n", "--namespace", default=None)
    rn.add_argument("names", nargs="+", metavar="name")
    ins = sub.add_parser(
        "inspect",
        help="decode and check a TLS Secret",
        description="Show a TLS Secret's certificate, chain, key type and fingerprints, and check "
        "it against its Certificate. Exit 1 when a check fails or the Secret does not exist.",
    )
    ins.add_argument("what", choices=("secret",))
    _cluster_flags(ins)
    ins.add_argument("-n", "--namespace", default=None)
    ins.add_argument("name")


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    p.add_argument("--context", default=None, help="kubeconfig context; default: the current")


def _kube(args: argparse.Namespace) -> tuple[Any, str]:
    """The API on the chosen kubeconfig and context, and that context's namespace."""
    from kubernetes import client, config

    from acmebridge.adapters.kube import Kube

    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
    except Exception as e:
        raise CliError(f"cannot load kubeconfig: {e}") from e
    if args.context:
        active = next((c for c in contexts if c.get("name") == args.context), active)
    ns = str((active or {}).get("context", {}).get("namespace") or "default")
    assert isinstance(api, client.ApiClient)
    return Kube(api), ns


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One API call; any failure other than "not found" (which ``Kube.get`` returns as None)
    is exit 2: the question could not be asked."""
    from acmebridge.adapters.kube import KubeError, NotFound

    try:
        return fn(*args, **kwargs)
    except NotFound as e:
        raise CliError(
            f"{what}: the API server does not know this resource: are the acmebridge CRDs "
            f"installed? ({e})"
        ) from e
    except KubeError as e:
        if e.status == 0:
            raise CliError(f"{what}: cannot reach the API server: {e.message}") from e
        if e.status == 403:
            raise CliError(f"{what}: permission refused: {e.message}") from e
        raise CliError(f"{what}: {e}") from e


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "renew":
        return renew(args)
    if args.command == "status":
        return status(args)
    if args.command == "inspect":
        return inspect_secret(args)
    raise CliError(f"unknown command {args.command}")


def renew(args: argparse.Namespace) -> int:
    from acmebridge.adapters.kube import ours_path

    kube, default_ns = _kube(args)
    ns = args.namespace or default_ns
    code = OK
    for name in args.names:
        path = ours_path("certificates", ns, name)
        cert = _call(f"reading Certificate {ns}/{name}", kube.get, path)
        if cert is None:
            print(f"Certificate {ns}/{name} not found", file=sys.stderr)
            code = PROBLEM
            continue
        conds = (cert.get("status") or {}).get("conditions") or []
        cond = Condition(
            type="Issuing",
            status="True",
            reason=MANUAL_REASON,
            message="Certificate re-issuance manually triggered",
            observed_generation=int(cert["metadata"].get("generation", 0)),
            last_transition_time=datetime.now(UTC),
        )
        patch = {"status": {"conditions": set_condition(conds, cond)}}
        what = f"updating the status of Certificate {ns}/{name} (renew needs that permission)"
        _call(what, kube.merge_patch, path + "/status", patch)
        print(f"Manually triggered issuance of Certificate {ns}/{name}")
    return code


def status_scope(args: argparse.Namespace, default_ns: str) -> str | None:
    """The namespace ``status`` looks in; None for all of them."""
    if args.all_namespaces:
        if args.name:
            raise CliError("a NAME needs a namespace: use -n, not -A")
        return None
    return str(args.namespace or default_ns)


def status(args: argparse.Namespace) -> int:
    from acmebridge.adapters.kube import KubeError, core_path, ours_path

    kube, default_ns = _kube(args)
    ns = status_scope(args, default_ns)
    if args.name:
        assert ns is not None
        one = _call("reading Certificates", kube.get, ours_path("certificates", ns, args.name))
        if one is None:
            print(f"Certificate {ns}/{args.name} not found", file=sys.stderr)
            return PROBLEM
        certs = [one]
    else:
        certs = _call("listing Certificates", kube.list, ours_path("certificates", ns))
    # Events are read only where a Certificate is not ready, one list per namespace. A user who
    # may not read Events still gets the conditions, which say most of it.
    events: dict[str, list[dict[str, Any]]] = {}
    for c in certs:
        cns = c["metadata"]["namespace"]
        if not statusreport.is_ready(c) and cns not in events:
            try:
                events[cns] = kube.list(core_path("events", cns))
            except KubeError as e:
                if e.status != 403:
                    raise CliError(f"listing Events in {cns}: {e}") from e
                print(f"acmebridge: not allowed to list Events in {cns}", file=sys.stderr)
                events[cns] = []
    rows = [
        statusreport.certificate_row(c, events.get(c["metadata"]["namespace"], []))
        for c in sorted(certs, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))
    ]
    if args.output == "json":
        print(json.dumps([r.to_json() for r in rows], indent=2))
    elif not rows:
        where = "in any namespace" if ns is None else f"in namespace {ns}"
        print(f"No Certificates found {where}")
    else:
        print(statusreport.status_table(rows, show_namespace=ns is None))
    return PROBLEM if any(r.problems for r in rows) else OK


def inspect_secret(args: argparse.Namespace) -> int:
    from acmebridge.adapters.kube import core_path, ours_path

    kube, default_ns = _kube(args)
    ns = args.namespace or default_ns
    secret = _call(
        f"reading Secret {ns}/{args.name}", kube.get, core_path("secrets", ns, args.name)
    )
    if secret is None:
        print(f"Secret {ns}/{args.name} not found", file=sys.stderr)
        return PROBLEM
    certificate = None
    owner = secretreport.certificate_name_of(secret)
    if owner:
        path = ours_path("certificates", ns, owner)
        certificate = _call(f"reading Certificate {ns}/{owner}", kube.get, path)
    report = secretreport.inspect_tls_secret(secret, certificate, now=datetime.now(UTC))
    print(report.text())
    return OK if report.ok else PROBLEM
