"""Phase two's ``iso-bios`` on a rootfs tar (initrd included), for the ISO row of the benchmark.

    python -m bench.iso_only ROOTFS.tar OUTDIR
"""

import sys
from pathlib import Path

from composer.atomic import OutputSet
from outputs import FORMATS, Options

rootfs, out = Path(sys.argv[1]), Path(sys.argv[2])
with OutputSet(out) as outs:
    FORMATS["iso-bios"].convert(rootfs, "bench", outs, Options(mtime=1_700_000_000))
    outs.commit()
