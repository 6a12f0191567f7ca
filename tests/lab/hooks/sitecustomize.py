"""Test-only fault hook: SIGKILL the operator right after a chosen step returns.

Python imports ``sitecustomize`` at start-up from the first directory on ``sys.path`` that has
one; a lab test that wants a crash at a precise step puts this directory on the operator
process's PYTHONPATH and names the step in ``LAB_KILL_AFTER``:

- ``new_order``, ``answer_challenge``, ``finalize``: the ACME request has been answered by the
  CA, and nothing of it is written down yet;
- ``present``: the HTTP-01 solver Pod, Service and Ingress exist, and the journal does not say so.

The operator itself has no such switch: without this directory on its path, nothing here exists.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
from typing import Any

_POINT = os.environ.get("LAB_KILL_AFTER", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str) -> None:
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def then_die_async(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            _die()
            return result

        setattr(owner, name, then_die_async)
    else:

        @functools.wraps(original)
        def then_die(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            _die()
            return result

        setattr(owner, name, then_die)


if _POINT in ("new_order", "answer_challenge", "finalize"):
    from acmebridge.adapters import acme_client

    _wrap(acme_client.AcmeSession, _POINT)
elif _POINT == "present":
    from acmebridge.reconcile import challenges

    _wrap(challenges, "present")
elif _POINT:
    raise SystemExit(f"LAB_KILL_AFTER={_POINT!r} is not a kill point this hook knows")
