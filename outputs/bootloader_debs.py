"""Where the default bootloader files come from: pinned Debian 12 (bookworm) packages.

One row per file: the role it plays, the pinned .deb (package, exact version, architecture,
sha256 of the .deb as Debian's signed indices list it, source package) and the file's path in
the package with its own sha256. :mod:`composer.debpool` fetches each .deb from Debian's archive
once (whatever the host runs, never through its apt sources), verifies it, and takes the files
out in-process; the host's ``/usr/lib`` is never read. A new bootloader is a new row.
"""

from __future__ import annotations

from composer.debpool import DebFile, PoolDeb

SYSLINUX_VERSION = "3:6.04~git20190206.bf6db5b4+dfsg1-3"

ISOLINUX = PoolDeb("isolinux", SYSLINUX_VERSION, "all",
                   "cb14af88adc2c3844976cd2de61571d2af94d2fb65c277fe4acf3dc8a5d25aae",
                   source="syslinux")
SYSLINUX_COMMON = PoolDeb("syslinux-common", SYSLINUX_VERSION, "all",
                          "f7e4ead7fdfe5cb6117d8d2485d75e53570a8cf680c81a432f92c1774f878875",
                          source="syslinux")
GRUB_EFI_AMD64_BIN = PoolDeb("grub-efi-amd64-bin", "2.06-13+deb12u2", "amd64",
                             "c04786d9f64fbf7cd181013266a8af52b463599cc54189915d03f1459e743135",
                             source="grub2")

# role -> the pinned file (roles as in outputs.bootloaders)
FILES: dict[str, DebFile] = {
    "isolinux.bin": DebFile(
        ISOLINUX, "usr/lib/ISOLINUX/isolinux.bin",
        "f3e2c1786564e148fb394e2321666ddccccedc18f7cf9db3e2416d45d13ea492"),
    "isohdpfx.bin": DebFile(
        ISOLINUX, "usr/lib/ISOLINUX/isohdpfx.bin",
        "7b43a4dd2061e95da55af51d57a2385c257d64444ee2a62264bcf634a1d0945b"),
    "ldlinux.c32": DebFile(
        SYSLINUX_COMMON, "usr/lib/syslinux/modules/bios/ldlinux.c32",
        "26cbd44c3a3dacbf3971cfbc04db539da07767fa00797f505044e2f68dcfae89"),
    # Debian's prebuilt GRUB for CDs: every module built in, prefix /boot/grub
    "bootx64.efi": DebFile(
        GRUB_EFI_AMD64_BIN, "usr/lib/grub/x86_64-efi/monolithic/gcdx64.efi",
        "737a90c9e0e71ff8d1da67d38b47f9a616e02c004c8f30b5c95fb2efbef5f3be"),
}
