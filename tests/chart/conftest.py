"""Fixtures for the chart's tests: the helm binary (rendering needs nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.chart.chart import helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm; the test is skipped, saying how to build it, when there is none."""
    found = helm_binary()
    if found is None:
        pytest.skip("helm is not built: `make lab-bin` builds it into .lab/bin (make test does)")
    return found
