"""Day-2 commands on the current kubeconfig: ``status``, ``renew``, ``inspect secret``.

Like cmctl: ``renew`` sets the ``Issuing`` condition (reason ManuallyTriggered) and the operator
does the rest; ``status`` explains from status and Events why a certificate is not ready;
``inspect secret`` decodes a TLS Secret and checks it against its Certificate. Exit codes: 0 all
good, 1 something is not ready or does not match, 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from acmebridge.domain import chain as chains
from acmebridge.domain.conditions import Condition, get_condition, set_condition
from acmebridge.domain.keys import load_private_key, public_key_fingerprint
from acmebridge.domain.timefmt import format_time


class CliError(Exception):
    """Usage or connection error (exit 2)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("status", help="certificates and, for any not ready, why")
    st.add_argument("-n", "--namespace", default=None)
    st.add_argument("-A", "--all-namespaces", action="store_true")
    st.add_argument("name", nargs="?")
    rn = sub.add_parser("renew", help="re-issue a certificate now")
    rn.add_argument("-n", "--namespace", default=None)
    rn.add_argument("name")
    ins = sub.add_parser("inspect", help="decode and check a TLS Secret")
    ins.add_argument("what", choices=("secret",))
    ins.add_argument("-n", "--namespace", default=None)
    ins.add_argument("name")


def _api() -> tuple[Any, str]:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        ns = str(active.get("context", {}).get("namespace") or "default")
    except Exception as e:
        raise CliError(f"cannot load kubeconfig: {e}") from e
    return client.ApiClient(), ns


def _kube() -> tuple[Any, str]:
    from acmebridge.adapters.kube import Kube

    api, ns = _api()
    return Kube(api), ns


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "renew":
        return renew(args.namespace, args.name)
    if args.command == "status":
        return status(args.namespace, args.name, all_namespaces=args.all_namespaces)
    if args.command == "inspect":
        return inspect_secret(args.namespace, args.name)
    raise CliError(f"unknown command {args.command}")


def renew(namespace: str | None, name: str) -> int:
    from acmebridge.adapters.kube import KubeError, ours_path

    kube, default_ns = _kube()
    ns = namespace or default_ns
    path = ours_path("certificates", ns, name)
    try:
        cert = kube.get(path)
    except KubeError as e:
        raise CliError(str(e)) from e
    if cert is None:
        print(f"Certificate {ns}/{name} not found")
        return 1
    conds = (cert.get("status") or {}).get("conditions") or []
    cond = Condition(
        type="Issuing",
        status="True",
        reason="ManuallyTriggered",
        message="Certificate re-issuance manually triggered",
        observed_generation=int(cert["metadata"].get("generation", 0)),
        last_transition_time=datetime.now(UTC),
    )
    kube.merge_patch(path + "/status", {"status": {"conditions": set_condition(conds, cond)}})
    print(f"Manually triggered issuance of Certificate {ns}/{name}")
    return 0


def _why(kube: Any, cert: Mapping[str, Any]) -> str:
    from acmebridge.adapters.kube import core_path

    status = cert.get("status") or {}
    conds = status.get("conditions") or []
    parts = []
    for t in ("Ready", "Issuing"):
        c = get_condition(conds, t)
        if c is not None and not (t == "Ready" and c.status == "True"):
            parts.append(f"{t}={c.status} {c.reason}: {c.message}")
    meta = cert["metadata"]
    events = kube.list(core_path("events", meta["namespace"]))
    mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") == meta.get("uid")]
    mine.sort(key=lambda e: e.get("lastTimestamp") or "")
    for e in mine[-3:]:
        if e.get("type") == "Warning":
            parts.append(f"event {e.get('reason')}: {e.get('message')}")
    return "; ".join(parts) or "no condition yet: is the operator running?"


def status(namespace: str | None, name: str | None, *, all_namespaces: bool) -> int:
    from acmebridge.adapters.kube import KubeError, ours_path

    kube, default_ns = _kube()
    ns = None if all_namespaces else (namespace or default_ns)
    try:
        if name:
            one = kube.get(ours_path("certificates", ns, name))
            certs = [one] if one else []
        else:
            certs = kube.list(ours_path("certificates", ns))
    except KubeError as e:
        raise CliError(str(e)) from e
    if not certs:
        print("No certificates found")
        return 1 if name else 0
    rows = [("NAMESPACE", "NAME", "READY", "SECRET", "NOT AFTER", "RENEWAL")]
    problems = []
    for c in certs:
        st = c.get("status") or {}
        ready = get_condition(st.get("conditions") or [], "Ready")
        r = ready.status if ready else "Unknown"
        meta = c["metadata"]
        rows.append(
            (
                meta["namespace"],
                meta["name"],
                r,
                c["spec"].get("secretName", ""),
                st.get("notAfter", "-"),
                st.get("renewalTime", "-"),
            )
        )
        if r != "True":
            problems.append((f"{meta['namespace']}/{meta['name']}", _why(kube, c)))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    for who, why in problems:
        print(f"\n{who} is not ready: {why}")
    return 1 if problems else 0


def inspect_secret(namespace: str | None, name: str) -> int:
    from acmebridge.adapters.kube import core_path, ours_path
    from acmebridge.domain.secret import CERTIFICATE_NAME_LABEL

    kube, default_ns = _kube()
    ns = namespace or default_ns
    secret = kube.get(core_path("secrets", ns, name))
    if secret is None:
        print(f"Secret {ns}/{name} not found")
        return 1
    data = secret.get("data") or {}
    crt = base64.b64decode(data.get("tls.crt", "")) if data.get("tls.crt") else b""
    if not crt:
        print(f"Secret {ns}/{name} has no tls.crt")
        return 1
    certs = chains.parse_pem_certificates(crt)
    leaf = chains.cert_summary(certs[0])
    ok = True
    print(f"Secret {ns}/{name}")
    print(f"  Subject:     {'CN=' + leaf.common_name if leaf.common_name else '-'}")
    print(f"  DNS names:   {', '.join(leaf.dns_names) or '-'}")
    print(f"  IP SANs:     {', '.join(leaf.ip_addresses) or '-'}")
    print(f"  URI SANs:    {', '.join(leaf.uris) or '-'}")
    print(f"  Issuer:      CN={leaf.issuer_common_name or ''}")
    print(f"  Not before:  {format_time(leaf.not_before)}")
    print(f"  Not after:   {format_time(leaf.not_after)}")
    print(f"  Serial:      {leaf.serial}")
    print(f"  Key:         {leaf.key_algorithm} {leaf.key_size}")
    print(f"  Fingerprint: {public_key_fingerprint(certs[0])} (SHA-256 of the public key)")
    print(f"  Chain:       {len(certs)} certificate(s)")
    for c in certs[1:]:
        print(f"               - {chains.describe(c.subject)}")
    ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else b""
    ca_name = chains.describe(chains.parse_pem_certificates(ca)[0].subject) if ca else "absent"
    print(f"  ca.crt:      {ca_name}")
    key = base64.b64decode(data.get("tls.key", "")) if data.get("tls.key") else b""
    if key:
        matches = public_key_fingerprint(load_private_key(key)) == public_key_fingerprint(certs[0])
        print(f"  Key matches: {'yes' if matches else 'NO'}")
        ok &= matches
    if leaf.not_after <= datetime.now(UTC):
        print("  EXPIRED")
        ok = False
    owner = (secret["metadata"].get("labels") or {}).get(CERTIFICATE_NAME_LABEL)
    if owner:
        cert = kube.get(ours_path("certificates", ns, owner))
        if cert is None:
            print(f"  Certificate: {owner} (not found)")
        else:
            mismatch = chains.cert_mismatch(
                leaf,
                dns_names=cert["spec"].get("dnsNames") or [],
                ip_addresses=cert["spec"].get("ipAddresses") or [],
                uris=cert["spec"].get("uris") or [],
                email_addresses=cert["spec"].get("emailAddresses") or [],
                common_name=cert["spec"].get("commonName"),
            )
            print(f"  Certificate: {owner}: {'matches' if mismatch is None else mismatch}")
            ok &= mismatch is None
    return 0 if ok else 1
