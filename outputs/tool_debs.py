"""The external programs whose version shapes output bytes, pinned as Debian 12 packages.

Run from the pinned .debs (:mod:`composer.debian.unpack`), never from the host, so Debian 13's
squashfs-tools-ng 1.3.2 or mtools 4.0.48 (or a missing package) changes nothing:

=========  =========================================  =========================================
program    used by                                    why its version matters
=========  =========================================  =========================================
tar2sqfs   kernel+squashfs                            lays out the image; libsquashfs writes
                                                      it and zlib compresses every block
mcopy      the syslinux disks (raw-bios, aws,         the syslinux installer writes
           qcow2-bios, vhd, dynamic-vhd, vmdk, gcp)   ldlinux.sys through it: mtools picks its
                                                      clusters and directory entries
=========  =========================================  =========================================

Every library the programs link comes from a pinned package too (the compressors tar2sqfs
loads but does not use for gzip images as well, so the host need not have them); only the C
library is the host's. sha256s are those of Debian 12's signed indices (``Packages``), for
amd64.
"""

from __future__ import annotations

from composer.debian.pool import PoolDeb
from composer.debian.unpack import PinnedTool

TAR2SQFS = PinnedTool("usr/bin/tar2sqfs", (
    PoolDeb("squashfs-tools-ng", "1.2.0-1", "amd64",
            "4edcbc605bcede24b2c113048692f303dd127c7a3e9cf4da3533a1d5ce8353d1"),
    PoolDeb("libsquashfs1", "1.2.0-1", "amd64",
            "7bf3ef5208bc88f2b6f380c5d8b631496e4da4037ddc6d2867ad81b4a7e2fa9d",
            source="squashfs-tools-ng"),
    PoolDeb("zlib1g", "1:1.2.13.dfsg-1", "amd64",
            "d7dd1d1411fedf27f5e27650a6eff20ef294077b568f4c8c5e51466dc7c08ce4", source="zlib"),
    PoolDeb("liblzma5", "5.4.1-1+deb12u1", "amd64",
            "f96d8876b53ec89d76a992bc199679b818cf518225a768954d9451fb556a4eb7",
            source="xz-utils"),
    PoolDeb("liblz4-1", "1.9.4-1", "amd64",
            "64cde86cef1deaf828bd60297839b59710b5cd8dc50efd4f12643caaee9389d3", source="lz4"),
    PoolDeb("libzstd1", "1.5.4+dfsg2-5", "amd64",
            "6315b5ac38b724a710fb96bf1042019398cb656718b1522279a5185ed39318fa",
            source="libzstd"),
    PoolDeb("liblzo2-2", "2.10-2", "amd64",
            "4f08e092c76e425295a498cd547dc9b8f6a595473f3020ab8c96309b29872636", source="lzo2"),
))

MCOPY = PinnedTool("usr/bin/mcopy", (
    PoolDeb("mtools", "4.0.33-1+really4.0.32-1", "amd64",
            "972e0857ff43dbfc4c9255844c97b5d2cb0287720216d04c95b4e7fa483aec99"),
))
