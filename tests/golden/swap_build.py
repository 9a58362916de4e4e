"""Build the golden inputs in this process and print what came out, as JSON: run by
test_zlib_swap.py (and usable by hand) with Python's zlib replaced by
tests/fixtures/zlibswap/sitecustomize.py.

    PYTHONPATH=tests/fixtures/zlibswap:. python -m tests.golden.swap_build WORKDIR FORMATS [--unpin]

``--unpin`` removes the pin: the deflate wrapper is pointed at whatever ``zlib`` is now (the
replacement), as code that used Python's zlib directly would be. Besides the outputs' digests,
the JSON has a gzip'd ``pkg build``-style layer (THE gzip writer through
:func:`composer.images.write.gzip_bytes`), which zlib module was in use and whether Python's real
zlib extension was ever loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path

LAYER = b"".join(b"%06d some layer bytes, compressible but not trivially\n" % i
                 for i in range(40000))


def real_zlib_loaded() -> list[str]:
    """Mapped files that are Python's own zlib extension (the one linking the system's libz)."""
    with open("/proc/self/maps") as maps:
        return sorted({line.split()[-1] for line in maps
                       if Path(line.split()[-1]).name.startswith("zlib.cpython")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("formats")
    parser.add_argument("--unpin", action="store_true")
    args = parser.parse_args(argv)

    from composer.streams import deflate

    if args.unpin:
        deflate._LIB = importlib.import_module("zlib")
    from composer.images.write import gzip_bytes
    from tests.golden.regenerate import build_golden, digests

    formats = tuple(args.formats.split(","))
    doc = digests(build_golden(args.workdir, formats), formats)
    zlib = sys.modules["zlib"]
    json.dump({"outputs": doc["outputs"], "content": doc["content"],
               "layer": hashlib.sha256(gzip_bytes(LAYER)).hexdigest(),
               "zlib": getattr(zlib, "SWAPPED", None),
               "real_zlib_loaded": real_zlib_loaded()}, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
