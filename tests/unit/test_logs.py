"""Log lines say which object they are about: JSON fields, or a suffix on text lines lacking it."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from acmebridge.config import OperatorConfig
from acmebridge.logs import JsonFormatter, TextFormatter, about, configure_logging
from acmebridge.reconcile.runtime import Runtime


def record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("acmebridge.issuance", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def as_json(rec: logging.LogRecord) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(JsonFormatter().format(rec))
    return parsed


def test_a_line_outside_a_reconcile_names_no_object() -> None:
    entry = as_json(record("watching %d namespaces", 2))
    assert entry["message"] == "watching 2 namespaces"
    assert entry["level"] == "info" and entry["logger"] == "acmebridge.issuance"
    assert not {"kind", "namespace", "name"} & set(entry)


def test_a_line_inside_a_reconcile_carries_its_object() -> None:
    with about("certificates", "shop", "web"):
        entry = as_json(record("created order %s", "https://ca.test/order/1"))
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("Certificate", "shop", "web")
    after = as_json(record("created order"))
    assert "name" not in after


def test_a_cluster_issuer_has_no_namespace_field() -> None:
    with about("clusterissuers", "", "corp"):
        entry = as_json(record("registered"))
    assert entry["kind"] == "ClusterIssuer" and entry["name"] == "corp"
    assert "namespace" not in entry


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            {"k8s_kind": "Issuer", "k8s_namespace": "shop", "k8s_name": "local"},
            ("Issuer", "shop", "local"),
            id="an explicit extra= wins over the bound object",
        ),
        pytest.param(
            {"k8s_ref": {"kind": "Certificate", "namespace": "other", "name": "api"}},
            ("Certificate", "shop", "web"),
            id="kopf's own reference comes after the bound object",
        ),
    ],
)
def test_which_object_wins(extra: dict[str, Any], expected: tuple[str, str, str]) -> None:
    with about("certificates", "shop", "web"):
        entry = as_json(record("x", **extra))
    assert (entry["kind"], entry["namespace"], entry["name"]) == expected


def test_kopf_records_name_their_object() -> None:
    ref = {"kind": "Certificate", "namespace": "shop", "name": "web", "uid": "1"}
    entry = as_json(record("Handler succeeded.", k8s_ref=ref))
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("Certificate", "shop", "web")


@pytest.mark.parametrize(
    ("message", "suffix"),
    [
        pytest.param(
            "Certificate shop/web: created order X", "", id="a message that names it is left alone"
        ),
        pytest.param(
            "AIA http://ca.test/i.crt not fetched",
            " [Certificate shop/web]",
            id="a message that does not gets the object",
        ),
    ],
)
def test_text_lines_name_the_object_once(message: str, suffix: str) -> None:
    with about("certificates", "shop", "web"):
        line = TextFormatter().format(record(message))
    assert line.endswith(f"acmebridge.issuance: {message}{suffix}")


def test_blocking_calls_in_the_pool_log_about_the_same_object() -> None:
    seen: list[dict[str, Any]] = []

    def blocking_call() -> None:
        seen.append(as_json(record("in a worker thread")))

    async def reconcile(rt: Runtime) -> None:
        with about("certificates", "shop", "web"):
            await rt.io(blocking_call)

    with ThreadPoolExecutor(max_workers=1) as pool:
        rt = Runtime(config=OperatorConfig(), kube=None, executor=pool)  # type: ignore[arg-type]
        asyncio.run(reconcile(rt))
    assert (seen[0]["namespace"], seen[0]["name"]) == ("shop", "web")


def test_exceptions_are_kept_in_json() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("acmebridge", logging.ERROR, __file__, 1, "failed", (), None)
        rec.exc_info = sys.exc_info()
    entry = as_json(rec)
    assert "RuntimeError: boom" in entry["exception"]


@pytest.fixture
def restore_logging() -> Any:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("kopf.objects").level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("kopf.objects").setLevel(saved[2])


@pytest.mark.parametrize(
    ("fmt", "level", "formatter", "kopf_objects"),
    [
        pytest.param("json", "INFO", JsonFormatter, logging.WARNING, id="json at INFO"),
        pytest.param("text", "INFO", TextFormatter, logging.WARNING, id="text at INFO"),
        pytest.param("text", "DEBUG", TextFormatter, logging.NOTSET, id="debug shows kopf too"),
    ],
)
def test_configure_logging(
    restore_logging: Any, fmt: str, level: str, formatter: type, kopf_objects: int
) -> None:
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET)
    configure_logging(fmt, level)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, formatter)
    assert logging.getLogger("kopf.objects").level == kopf_objects
