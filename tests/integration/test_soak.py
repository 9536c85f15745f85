"""The soak (``python -m bench.soak``) at 200 containers: nothing left behind, laminad back to its footprint."""

from __future__ import annotations

import os

import pytest

from bench.soak import soak
from tests.integration.test_runtime_support import needs_runc

pytestmark = [needs_runc, pytest.mark.timeout(300)]


def test_200_containers_leave_nothing_behind() -> None:
    if not os.path.exists("/usr/bin/ctr"):
        pytest.skip("the reference client /usr/bin/ctr (Debian package containerd) is not installed")
    result = soak(200)
    print(result.table())
    assert result.problems() == []
