"""The snapshotter conformance suite against both built-in snapshotters."""

from __future__ import annotations

import pytest

from lamina.snapshots.testsuite.suite import *  # noqa: F403


@pytest.fixture(params=["overlayfs", "native"])
def snapshotter_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)
