"""Every conformance case through ``umoci raw unpack`` as an independent oracle."""

from __future__ import annotations

import subprocess

import pytest

from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from tests.fixtures.conformance import CASES
from tests.fixtures.tree_compare import check, unpacked
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_umoci_agrees(tmp_path, case):
    umoci = require_tool("umoci")
    store = Cache(tmp_path / "store")
    export_layout(store, write_image(store, case.layers), tmp_path / "oci", "case")
    proc = subprocess.run([umoci, "raw", "unpack", "--image", f"{tmp_path / 'oci'}:case",
                           str(tmp_path / "rootfs")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    check(case, *unpacked(tmp_path / "rootfs"))
