"""The ingress stand-in picks the backend a conforming ingress controller would pick (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab.standins._routing import (
    Backend,
    Endpoint,
    host_specificity,
    is_ours,
    path_matches,
    request_host,
    select_backend,
    select_endpoint,
)


# The examples table of the Ingress documentation ("Examples" under "Path types").
@pytest.mark.parametrize(
    ("path_type", "rule", "path", "matches"),
    [
        pytest.param("Prefix", "/", "/anything/at/all", True, id="prefix / matches every path"),
        pytest.param("Exact", "/foo", "/foo", True, id="exact matches the same path"),
        pytest.param("Exact", "/foo", "/bar", False, id="exact refuses another path"),
        pytest.param("Exact", "/foo", "/foo/", False, id="exact refuses a trailing slash"),
        pytest.param("Exact", "/foo/", "/foo", False, id="exact rule with slash refuses without"),
        pytest.param("Prefix", "/foo", "/foo/", True, id="prefix matches a trailing slash"),
        pytest.param("Prefix", "/foo/", "/foo", True, id="prefix ignores its trailing slash"),
        pytest.param("Prefix", "/aaa/bb", "/aaa/bbb", False, id="prefix matches whole elements"),
        pytest.param("Prefix", "/aaa/bbb", "/aaa/bbb", True, id="prefix matches itself"),
        pytest.param("Prefix", "/aaa/bbb/", "/aaa/bbb", True, id="prefix slash ignored on path"),
        pytest.param("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True, id="prefix matches a subpath"),
        pytest.param(
            "Prefix", "/aaa/bbb", "/aaa/bbbxyz", False, id="prefix is not a string prefix"
        ),
        pytest.param(
            "ImplementationSpecific", "/aaa", "/aaa/x", True, id="impl-specific acts as prefix"
        ),
    ],
)
def test_path_matching(path_type: str, rule: str, path: str, matches: bool) -> None:
    assert path_matches(path_type, rule, path) is matches


@pytest.mark.parametrize(
    ("rule_host", "host", "specificity"),
    [
        pytest.param("foo.example", "foo.example", 2, id="an exact host matches"),
        pytest.param("Foo.Example", "foo.example", 2, id="hosts compare case-insensitively"),
        pytest.param("foo.example", "bar.example", None, id="another host does not match"),
        pytest.param("*.example", "foo.example", 1, id="a wildcard matches one label"),
        pytest.param("*.example", "a.foo.example", None, id="a wildcard matches only one label"),
        pytest.param("*.example", "example", None, id="a wildcard needs a label"),
        pytest.param(None, "anything.example", 0, id="a rule without host matches any host"),
        pytest.param(None, "", 0, id="a rule without host matches a request without Host"),
    ],
)
def test_host_matching(rule_host: str | None, host: str, specificity: int | None) -> None:
    assert host_specificity(rule_host, host) == specificity


@pytest.mark.parametrize(
    ("header", "host"),
    [
        pytest.param("Foo.Example:5002", "foo.example", id="the port is dropped, case folded"),
        pytest.param("foo.example.", "foo.example", id="a trailing dot is dropped"),
        pytest.param("[::1]:5002", "::1", id="an IPv6 literal loses brackets and port"),
        pytest.param("127.0.0.1", "127.0.0.1", id="an IPv4 literal stays"),
    ],
)
def test_request_host(header: str, host: str) -> None:
    assert request_host(header) == host


@pytest.mark.parametrize(
    ("spec", "annotations", "ours"),
    [
        pytest.param({"ingressClassName": "lab"}, {}, True, id="the lab class is ours"),
        pytest.param({"ingressClassName": "nginx"}, {}, False, id="another class is not"),
        pytest.param({}, {}, True, id="no class at all is ours"),
        pytest.param({}, {"kubernetes.io/ingress.class": "lab"}, True, id="the legacy annotation"),
        pytest.param({}, {"kubernetes.io/ingress.class": "nginx"}, False, id="another annotation"),
    ],
)
def test_ingress_class(spec: dict[str, Any], annotations: dict[str, str], ours: bool) -> None:
    ingress = {"metadata": {"annotations": annotations}, "spec": spec}
    assert is_ours(ingress, "lab") is ours


def _ingress(
    name: str,
    rules: list[dict[str, Any]],
    *,
    created: str = "2030-01-01T00:00:00Z",
    ingress_class: str | None = None,
    default: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": rules}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": spec,
    }


def _rule(host: str | None, *paths: tuple[str, str, str]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"name": "http"}}},
                }
                for path, path_type, service in paths
            ]
        }
    }
    if host:
        rule["host"] = host
    return rule


CHALLENGE = "/.well-known/acme-challenge/tok"
SOLVER = _ingress("solver", [_rule("a.example", (CHALLENGE, "Exact", "solver"))])
SITE = _ingress(
    "site",
    [
        _rule("a.example", ("/", "Prefix", "site"), ("/.well-known", "Prefix", "wellknown")),
        _rule("*.example", ("/", "Prefix", "wildcard")),
        _rule(None, ("/", "Prefix", "catchall")),
    ],
)


@pytest.mark.parametrize(
    ("ingresses", "host", "path", "service"),
    [
        pytest.param(
            [SOLVER, SITE], "a.example", CHALLENGE, "solver", id="the solver's exact path wins"
        ),
        pytest.param(
            [SOLVER, SITE],
            "a.example",
            "/.well-known/other",
            "wellknown",
            id="the longest prefix wins",
        ),
        pytest.param([SOLVER, SITE], "a.example", "/", "site", id="rules of two Ingresses merge"),
        pytest.param([SOLVER, SITE], "b.example", CHALLENGE, "wildcard", id="a wildcard host"),
        pytest.param([SOLVER, SITE], "other.test", "/x", "catchall", id="a rule without host"),
        pytest.param([SOLVER], "b.example", CHALLENGE, None, id="no rule for another host"),
        pytest.param([SOLVER], "a.example", CHALLENGE + "x", None, id="no rule for another token"),
        pytest.param(
            [_ingress("other", [_rule(None, ("/", "Prefix", "x"))], ingress_class="nginx")],
            "a.example",
            "/",
            None,
            id="another class's Ingress is ignored",
        ),
        pytest.param(
            [
                _ingress("p", [_rule("a.example", ("/foo", "Prefix", "prefix"))]),
                _ingress("e", [_rule("a.example", ("/foo", "Exact", "exact"))]),
            ],
            "a.example",
            "/foo",
            "exact",
            id="exact beats prefix of equal length",
        ),
        pytest.param(
            [
                _ingress(
                    "new",
                    [_rule("a.example", ("/", "Prefix", "new"))],
                    created="2031-01-01T00:00:00Z",
                ),
                _ingress("old", [_rule("a.example", ("/", "Prefix", "old"))]),
            ],
            "a.example",
            "/",
            "old",
            id="the oldest Ingress wins a full tie",
        ),
        pytest.param(
            [_ingress("d", [_rule("a.example", ("/api", "Prefix", "api"))], default="fallback")],
            "a.example",
            "/other",
            "fallback",
            id="the default backend when no path matches",
        ),
    ],
)
def test_select_backend(
    ingresses: list[dict[str, Any]], host: str, path: str, service: str | None
) -> None:
    backend = select_backend(ingresses, host=host, path=path, ingress_class="lab")
    assert (backend.service if backend else None) == service


SERVICE = {
    "spec": {
        "ports": [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "metrics", "port": 9090, "targetPort": 9090},
        ]
    }
}


def _slice(name: str, endpoints: list[tuple[str, bool | None]], port: int = 8089) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port}, {"name": "metrics", "port": 9090}],
        "endpoints": [
            {"addresses": [address], "conditions": {} if ready is None else {"ready": ready}}
            for address, ready in endpoints
        ],
    }


@pytest.mark.parametrize(
    ("port", "slices", "expected"),
    [
        pytest.param(
            {"number": 80},
            [_slice("s1", [("10.244.0.2", False), ("10.244.0.3", True)])],
            Endpoint("10.244.0.3", 8089),
            id="the first ready endpoint, on the slice port named like the service port",
        ),
        pytest.param(
            {"name": "http"},
            [_slice("s1", [("10.244.0.4", None)])],
            Endpoint("10.244.0.4", 8089),
            id="a service port by name; unknown readiness counts as ready",
        ),
        pytest.param(
            {"number": 80},
            [_slice("s1", [("10.244.0.2", False)])],
            None,
            id="no ready endpoint",
        ),
        pytest.param({"number": 80}, [], None, id="no EndpointSlice yet"),
        pytest.param(
            {"number": 81}, [_slice("s1", [("10.244.0.2", True)])], None, id="no such port"
        ),
    ],
)
def test_select_endpoint(
    port: dict[str, Any], slices: list[dict[str, Any]], expected: Endpoint | None
) -> None:
    backend = Backend("ns", "svc", port.get("number"), port.get("name"), route="test")
    assert select_endpoint(SERVICE, slices, backend) == expected
