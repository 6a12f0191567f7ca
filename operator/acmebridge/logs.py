"""Log setup: readable text by default, one JSON object a line with ``--log-format json``.

Lines about an object carry its namespace and name in the message (``Certificate ns/name: …``),
so they can be found with grep in text and with a field filter in JSON. No code path logs key
material: keys stay in memory and in Secrets only.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The HTTP client libraries log request lines (with URLs) at DEBUG; they add noise only.
    for noisy in ("urllib3", "kubernetes.client.rest", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
