"""The kernel unpacks every --initrd-compression choice: the example boots from a zstd and an
lz4 initrd (gzip boots in test_end_to_end; none is the plain cpio the kernel always reads)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import banner_lines
from tests.integration.test_end_to_end import BANNER, ROOT, boot_lines, composer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("choice", ["zstd", "lz4"])
def test_the_example_boots_from_a_compressed_initrd(choice, example_packages, tmp_path):
    cache, _ = example_packages["kernel"]
    out = tmp_path / "out"
    composer("build", "--offline", "--cache", str(cache.root), "-o", str(out),
             "--initrd-compression", choice, str(ROOT / "examples" / "hello.yml"))
    lines = boot_lines(out / "hello")
    assert banner_lines(lines, BANNER) == BANNER, "\n".join(lines[-60:])
