"""The node agent starts a container with the command line and environment kubelet would give it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from tests.lab.standins._container import (
    ContainerConfigError,
    Readiness,
    command_line,
    container_env,
    expand,
    readiness,
)

VARS = {
    "VAR_A": "A",
    "VAR_B": "B",
    "VAR_C": "C",
    "VAR_REF": "$(VAR_A)",
    "VAR_EMPTY": "",
}


# The cases of Kubernetes' own expansion tests (third_party/forked/golang/expansion).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("$(VAR_A)", "A", id="a whole-string reference is replaced"),
        pytest.param("$(VAR_A)-$(VAR_A)", "A-A", id="a repeated reference is replaced twice"),
        pytest.param("___$(VAR_B)___", "___B___", id="a reference in the middle is replaced"),
        pytest.param("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C", id="several references are replaced"),
        pytest.param("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A", id="a doubled dollar escapes"),
        pytest.param("f000-$$VAR_A", "f000-$VAR_A", id="a doubled dollar is one dollar"),
        pytest.param("foo\\$(VAR_C)bar", "foo\\Cbar", id="a backslash escapes nothing"),
        pytest.param("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))", id="nested references stay"),
        pytest.param("$(VAR_REF)", "$(VAR_A)", id="a value is not expanded again"),
        pytest.param("foo$(VAR_EMPTY)bar", "foobar", id="an empty variable expands to nothing"),
        pytest.param(
            "foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!", id="an unterminated reference stays"
        ),
        pytest.param("$?_boo_$!", "$?_boo_$!", id="shell's special variables pass through"),
        pytest.param("$VAR_A", "$VAR_A", id="a bare dollar is not a reference"),
        pytest.param("${VAR_A}", "${VAR_A}", id="shell brace syntax is not a reference"),
        pytest.param("$(VAR_DNE)", "$(VAR_DNE)", id="an undefined variable stays as written"),
        pytest.param("$$$$$$(VAR_A)", "$$$(VAR_A)", id="an even run of dollars escapes"),
        pytest.param("$$$$$$$(VAR_A)", "$$$A", id="an odd run of dollars expands"),
        pytest.param("$(VAR_C)_______$(", "C_______$(", id="a trailing opener stays"),
        pytest.param("price: 5$", "price: 5$", id="a dollar at the end stays"),
    ],
)
def test_expand_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, VARS) == expected


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "solver-x",
            "namespace": "team-a",
            "uid": "u-1",
            "labels": {"acmebridge.io/solver": "true"},
        },
        "spec": {"nodeName": "lab-node", "containers": [{"name": "c", **container}]},
    }


def _no_data(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return None


def test_solver_command_line_gets_the_pods_loopback_address() -> None:
    pod = _pod(
        {
            "command": ["acmebridge", "solve-http01"],
            "args": ["--listen=$(POD_IP):8089", "--name=$(NAME)", "--literal=$$(POD_IP)"],
            "env": [
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        }
    )
    env = container_env(pod, pod_ip="127.0.1.7", host_ip="127.0.0.1", lookup=_no_data)
    assert command_line(pod, env) == [
        "acmebridge",
        "solve-http01",
        "--listen=127.0.1.7:8089",
        "--name=solver-x",
        "--literal=$(POD_IP)",
    ]


def test_env_values_see_earlier_variables_only() -> None:
    pod = _pod(
        {
            "command": ["x"],
            "env": [
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "WHERE", "value": "$(NS)/$(LATER)"},
                {"name": "LATER", "value": "late"},
                {
                    "name": "LABEL",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.labels['acmebridge.io/solver']"}
                    },
                },
            ],
        }
    )
    env = container_env(pod, pod_ip="127.0.1.2", host_ip="127.0.0.1", lookup=_no_data)
    assert env == {"NS": "team-a", "WHERE": "team-a/$(LATER)", "LATER": "late", "LABEL": "true"}


def test_env_reads_secret_and_config_map_keys_by_name() -> None:
    secret = {"data": {"token": base64.b64encode(b"s3cret").decode()}}
    objects = {("Secret", "team-a", "creds"): secret, ("ConfigMap", "team-a", "cfg"): None}

    def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        if kind == "Secret" and (kind, namespace, name) in objects:
            return {"token": "s3cret"}
        return None

    pod = _pod(
        {
            "command": ["x"],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {
                    "name": "MAYBE",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": True}},
                },
            ],
        }
    )
    env = container_env(pod, pod_ip="127.0.1.2", host_ip="127.0.0.1", lookup=lookup)
    assert env == {"TOKEN": "s3cret"}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        pytest.param({"args": ["serve"]}, "no command", id="a container without command"),
        pytest.param(
            {"command": ["x"], "envFrom": [{"secretRef": {"name": "s"}}]},
            "envFrom",
            id="a container with envFrom",
        ),
        pytest.param(
            {
                "command": ["x"],
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            },
            "has no key",
            id="a missing required Secret key",
        ),
        pytest.param(
            {
                "command": ["x"],
                "env": [{"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
            },
            "not supported",
            id="a field reference the agent does not know",
        ),
    ],
)
def test_what_the_agent_cannot_run_is_a_config_error(
    container: dict[str, Any], message: str
) -> None:
    pod = _pod(container)
    with pytest.raises(ContainerConfigError, match=message):
        env = container_env(pod, pod_ip="127.0.1.2", host_ip="127.0.0.1", lookup=_no_data)
        command_line(pod, env)


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        pytest.param(
            {
                "ports": [{"name": "http", "containerPort": 8089}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            },
            Readiness("http", 8089, "/healthz"),
            id="an httpGet probe on a named port",
        ),
        pytest.param(
            {"readinessProbe": {"tcpSocket": {"port": 9000}}},
            Readiness("tcp", 9000),
            id="a tcpSocket probe",
        ),
        pytest.param(
            {"ports": [{"containerPort": 8089}]},
            Readiness("tcp", 8089),
            id="no probe: a connect to the first port",
        ),
        pytest.param(
            {"readinessProbe": {"exec": {"command": ["true"]}}},
            Readiness("alive"),
            id="an exec probe and no port: alive is ready",
        ),
    ],
)
def test_readiness_check(container: dict[str, Any], expected: Readiness) -> None:
    assert readiness(_pod({"command": ["x"], **container})) == expected
