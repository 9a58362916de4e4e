"""The initrd half of kernel+initrd on a rootfs tar that has no kernel (for the benchmark)."""

import sys
from pathlib import Path

from outputs.initrd.cpio import scan_links
from outputs.initrd.formats import in_initrd, write_initrd

rootfs, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(rootfs, "rb") as f:
    links = scan_links(f, in_initrd)
with open(out, "wb") as o:
    write_initrd(rootfs, links, o, 6, out.parent)
