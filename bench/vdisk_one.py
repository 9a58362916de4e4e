"""One container conversion by image-composer's writers, as its own process for ``bench.vdisk``.

    python -m bench.vdisk_one FORMAT RAW OUT     (FORMAT: qcow2 vhd dynamic-vhd vmdk gcp)
"""

import sys
from pathlib import Path

from outputs.disk.gcp import write_gcp
from outputs.disk.qcow2 import write_qcow2
from outputs.disk.vhd import write_vhd_dynamic, write_vhd_fixed
from outputs.disk.vmdk import write_vmdk

fmt, raw, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
with open(out, "wb") as f:
    if fmt == "qcow2":
        write_qcow2(raw, f)
    elif fmt == "vhd":
        write_vhd_fixed(raw, f, epoch=1_700_000_000, seed=b"bench")
    elif fmt == "dynamic-vhd":
        write_vhd_dynamic(raw, f, epoch=1_700_000_000, seed=b"bench")
    elif fmt == "vmdk":
        write_vmdk(raw, f, seed=b"bench")
    elif fmt == "gcp":
        write_gcp(raw, f, epoch=1_700_000_000)
    else:
        sys.exit(f"unknown format {fmt}")
