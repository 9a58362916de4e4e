"""Only the ISO-writing part of ``iso-bios`` (what ``xorriso -as mkisofs`` does), on a directory
of ready files laid out as the ISO: boot/kernel, boot/initrd.img, boot/cmdline, isolinux/*.

    python -m bench.iso_assemble ISODIR OUT.iso
"""

import contextlib
import os
import sys
from pathlib import Path

from outputs import bootloaders
from outputs.iso.formats import LAYOUTS, assemble

tree, out = Path(sys.argv[1]), Path(sys.argv[2])
loaded = bootloaders.load_all(bootloaders.resolve((bootloaders.ISOHDPFX,)))
with contextlib.ExitStack() as stack:
    entries = {}
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        fh = stack.enter_context(open(path, "rb"))
        entries[path.relative_to(tree).as_posix()] = (fh, os.fstat(fh.fileno()).st_size)
    with open(out, "wb") as iso:
        assemble(iso, entries, LAYOUTS["iso-bios"], loaded, b"bench seed", 1_700_000_000)
