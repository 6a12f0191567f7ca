"""What the node agent reads from a Pod's first container: command line, environment, readiness.

Test-only code, pure: it follows kubelet's rules (``$(VAR)`` expansion as in
``third_party/forked/golang/expansion``, env resolved in order with earlier variables in scope,
downward-API field references) so that a solver Pod runs here with the command line it would get
in a cluster. Anything kubelet could do but this agent cannot raises ``ContainerConfigError``,
which the agent reports the way kubelet reports CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
# Finds a ConfigMap's or Secret's data by (kind, namespace, name); None when it does not exist.
DataLookup = Callable[[str, str, str], Mapping[str, str] | None]

_KEYED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be started as specified."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is a literal ``$``, unknown references stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            closer = text.find(")", i + 2)
            if closer == -1:  # an unterminated reference is copied as written
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : closer]
                out.append(variables.get(name, f"$({name})"))
                i = closer + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def field_value(pod: JSON, path: str, *, pod_ip: str, host_ip: str) -> str:
    """A downward-API ``fieldRef``; ``pod_ip`` is the address the process can listen on."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    keyed = _KEYED_FIELD.match(path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    raise ContainerConfigError(f"fieldRef {path!r} is not supported by the lab's node agent")


def _data_value(source: JSON, kind: str, namespace: str, lookup: DataLookup) -> str | None:
    data = lookup(kind, namespace, source.get("name", ""))
    key = source.get("key", "")
    if data is not None and key in data:
        return data[key]
    if source.get("optional"):
        return None
    raise ContainerConfigError(f"{kind} {source.get('name')!r} has no key {key!r}")


def container_env(pod: JSON, *, pod_ip: str, host_ip: str, lookup: DataLookup) -> dict[str, str]:
    """The first container's environment, each value expanded with the variables before it."""
    container = first_container(pod)
    if container.get("envFrom"):
        raise ContainerConfigError("envFrom is not supported by the lab's node agent")
    namespace = pod.get("metadata", {}).get("namespace", "")
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if not source:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(
                pod, source["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip
            )
        elif "configMapKeyRef" in source:
            value = _data_value(source["configMapKeyRef"], "ConfigMap", namespace, lookup)
            if value is not None:
                env[name] = value
        elif "secretKeyRef" in source:
            value = _data_value(source["secretKeyRef"], "Secret", namespace, lookup)
            if value is not None:
                env[name] = value
        else:
            raise ContainerConfigError(f"env {name!r}: this valueFrom is not supported")
    return env


def secret_data(secret: JSON) -> dict[str, str]:
    """A Secret's data, decoded (stringData never comes back from the API server)."""
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def first_container(pod: JSON) -> JSON:
    containers = pod.get("spec", {}).get("containers") or []
    if not containers:
        raise ContainerConfigError("the Pod has no container")
    first: JSON = containers[0]
    return first


def command_line(pod: JSON, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` expanded with the container's environment.

    Without ``command`` a container runs its image's entrypoint, which this agent cannot know.
    """
    container = first_container(pod)
    if not container.get("command"):
        raise ContainerConfigError(
            "the container has no command; the image's entrypoint is unknown"
        )
    return [expand(part, env) for part in [*container["command"], *(container.get("args") or [])]]


@dataclass(frozen=True)
class Readiness:
    """How the agent decides the container is ready: ``http``, ``tcp`` or ``alive``."""

    kind: str
    port: int = 0
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)


def _port_number(container: JSON, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ContainerConfigError(f"probe port {port!r} is not a named container port")


def readiness(pod: JSON) -> Readiness:
    """The httpGet or tcpSocket readinessProbe, else a connect to the first port, else alive.

    Probes go to the process's loopback address whatever ``host`` says, since that is where it
    listens; exec and gRPC probes count as alive.
    """
    container = first_container(pod)
    probe = container.get("readinessProbe") or {}
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get.get("scheme", "HTTP").upper() != "HTTP":
            raise ContainerConfigError("HTTPS readiness probes are not supported")
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        return Readiness(
            "http", _port_number(container, get["port"]), get.get("path") or "/", headers
        )
    if "tcpSocket" in probe:
        return Readiness("tcp", _port_number(container, probe["tcpSocket"]["port"]))
    ports = container.get("ports") or []
    if ports and ports[0].get("protocol", "TCP") == "TCP":
        return Readiness("tcp", int(ports[0]["containerPort"]))
    return Readiness("alive")
