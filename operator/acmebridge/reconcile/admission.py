"""Admission decisions for workload mTLS, served by every replica (leader or not).

The Pod webhook needs nothing the leader keeps: the Secret's name comes from the Pod's owner
(``domain.workload_mtls.workload_of_pod``), the mounts from its annotations, and whether
``ca.crt`` comes from the namespace's trust bundle from one GET of the namespace. So a standby
replica answers exactly as the leader would, and the webhook keeps answering while the leader
is stopped or being replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from acmebridge.adapters.kube import core_path
from acmebridge.domain.injection import Injection, inject
from acmebridge.domain.trust import wants_trust
from acmebridge.domain.workload_certificate import (
    certificate_name,
    workload_of_pod,
)
from acmebridge.domain.workload_mtls import (
    DNS_NAMES,
    INJECT,
    AnnotationError,
    MtlsDefaults,
    MtlsRequest,
    parse_request,
    render_dns_names,
)
from acmebridge.reconcile.runtime import Runtime


class Refused(Exception):
    """The object cannot be admitted; the message says why and what would work."""


def _annotations(metadata: Mapping[str, Any] | None) -> Mapping[str, str]:
    return (metadata or {}).get("annotations") or {}


async def pod_injection(
    rt: Runtime, pod: Mapping[str, Any], *, namespace: str, defaults: MtlsDefaults
) -> Injection | None:
    """The Pod's new lists, None to admit it unchanged; raises AnnotationError or Refused."""
    request = parse_request(_annotations(pod.get("metadata")), defaults=defaults)
    if request is None:
        return None
    workload = workload_of_pod(pod, namespace)
    if workload is None:
        raise Refused(
            f"{INJECT}: only Pods of a Deployment, StatefulSet or DaemonSet get certificates "
            "(the Certificate belongs to the workload); put the annotations on a workload's "
            "pod template"
        )
    # Not the reconciles' pool: an admission request must not queue behind ACME calls, or the
    # API server's 10 s timeout would refuse the Pod while the operator is merely busy.
    ns = await asyncio.to_thread(rt.kube.get, core_path("namespaces", None, namespace))
    return inject(
        pod.get("spec") or {},
        request,
        secret_name=certificate_name(workload.kind, workload.name),
        trust_bundle=wants_trust(ns),
    )


def check_workload(body: Mapping[str, Any], *, defaults: MtlsDefaults) -> MtlsRequest | None:
    """Pure: a workload's template annotations are usable; raises AnnotationError naming the
    first bad one. Names are rendered only when the workload or the operator gives them (the
    issuer's template is the workload reconcile's to read)."""
    template = (body.get("spec") or {}).get("template") or {}
    meta = body.get("metadata") or {}
    request = parse_request(_annotations(template.get("metadata")), defaults=defaults)
    if request is None:
        return None
    if request.dns_names or defaults.dns_names_template:
        try:
            render_dns_names(
                request,
                workload=str(meta.get("name", "")),
                namespace=str(meta.get("namespace", "")),
                issuer_template=None,
                defaults=defaults,
            )
        except AnnotationError as e:
            if e.annotation != DNS_NAMES or request.dns_names:
                raise
    inject(template.get("spec") or {}, request, secret_name="check", trust_bundle=False)
    return request
