"""Log setup: readable text by default, one JSON object a line with ``--log-format json``.

Every line written while an object is reconciled says which object it is about, without each log
call having to repeat it: the reconcile binds the object with :func:`about` (a context variable,
so it follows the reconcile's task and, through ``Runtime.io``, its calls in the thread pool), and
the formatters read it. JSON lines get ``kind``, ``namespace`` and ``name`` fields to filter on;
text lines already name the object in most messages (``Certificate ns/name: …``) and get a
``[Certificate ns/name]`` suffix only when they do not. A call may also name an object itself
with ``extra={"k8s_kind": …, "k8s_namespace": …, "k8s_name": …}`` (``name`` is taken by the
logging module). No code path logs key material: keys stay in memory and in Secrets only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: resource plural -> kind, for the object a log line is about
KINDS = {"certificates": "Certificate", "issuers": "Issuer", "clusterissuers": "ClusterIssuer"}

_ABOUT: ContextVar[tuple[str, str, str] | None] = ContextVar("acmebridge_log_about", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@contextlib.contextmanager
def about(plural: str, namespace: str, name: str) -> Iterator[None]:
    """Lines logged inside this block (and in threads it hands work to) are about this object."""
    token = _ABOUT.set((KINDS.get(plural, plural), namespace, name))
    try:
        yield
    finally:
        _ABOUT.reset(token)


def subject(record: logging.LogRecord) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the object a record is about, or None.

    An explicit ``extra=`` wins over the bound object; kopf's own per-object records carry a
    ``k8s_ref`` mapping, which is used last.
    """
    name = getattr(record, "k8s_name", None)
    if name:
        return (
            str(getattr(record, "k8s_kind", "") or ""),
            str(getattr(record, "k8s_namespace", "") or ""),
            str(name),
        )
    bound = _ABOUT.get()
    if bound is not None:
        return bound
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("name"):
        return (str(ref.get("kind") or ""), str(ref.get("namespace") or ""), str(ref["name"]))
    return None


def _where(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        about_ = subject(record)
        if about_ is not None:
            kind, namespace, name = about_
            if kind:
                entry["kind"] = kind
            if namespace:
                entry["namespace"] = namespace
            entry["name"] = name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        about_ = subject(record)
        if about_ is None:
            return line
        kind, namespace, name = about_
        where = _where(namespace, name)
        if where in record.message:
            return line
        return f"{line} [{kind} {where}]" if kind else f"{line} [{where}]"


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP client libraries log request lines (with URLs) at DEBUG; they add noise only.
    for noisy in ("urllib3", "kubernetes.client.rest", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    # kopf says "Handler '_certificate_event' succeeded." at INFO for every watch event, that is
    # for every status write: thousands of lines an hour that say nothing. Its warnings and
    # errors (a handler that raised, a watch that broke) still show; --verbose shows it all.
    if root.level > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, root.level))
    # kopf logs every watch event's handler at INFO ("Handler ... succeeded"); acmebridge logs
    # what happened to the object itself, so kopf's per-event lines are kept for --verbose only.
    if root.level > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
