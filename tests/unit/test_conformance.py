"""Our flattener against the hand-written expected trees of the conformance corpus."""

from __future__ import annotations

import pytest

from composer.images.cache import Cache
from tests.fixtures.conformance import CASES
from tests.fixtures.tree_compare import check, ours


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(tmp_path, case):
    check(case, *ours(Cache(tmp_path / "cache"), case.layers))
