"""Where the default bootloader files come from: pinned Debian 12 (bookworm) packages.

One row per file: the role it plays, the pinned .deb (package, exact version, architecture,
sha256 of the .deb as Debian's signed indices list it, source package) and the file's path in
the package with its own sha256. :mod:`composer.debian.pool` fetches each .deb from Debian's archive
once (whatever the host runs, never through its apt sources), verifies it, and takes the files
out in-process; the host's ``/usr/lib`` is never read. A new bootloader is a new row.
"""

from __future__ import annotations

from composer.debian.pool import DebFile, PoolDeb

SYSLINUX_VERSION = "3:6.04~git20190206.bf6db5b4+dfsg1-3"

ISOLINUX = PoolDeb("isolinux", SYSLINUX_VERSION, "all",
                   "cb14af88adc2c3844976cd2de61571d2af94d2fb65c277fe4acf3dc8a5d25aae",
                   source="syslinux")
SYSLINUX_COMMON = PoolDeb("syslinux-common", SYSLINUX_VERSION, "all",
                          "f7e4ead7fdfe5cb6117d8d2485d75e53570a8cf680c81a432f92c1774f878875",
                          source="syslinux")
SYSLINUX = PoolDeb("syslinux", SYSLINUX_VERSION + "+b1", "amd64",
                   "07a34a8b09e19ef44285d45c24aefd1119cf3c1580223cbca0dc58f8dd33ee33",
                   source="syslinux")
SYSTEMD_BOOT_EFI = PoolDeb("systemd-boot-efi", "252.39-1~deb12u2", "amd64",
                           "8f2b81bdcfafc466882a0cae460272dbf10d8d97c6a3c1c6ea33038c155a2f5e",
                           source="systemd")
GRUB_EFI_AMD64_BIN = PoolDeb("grub-efi-amd64-bin", "2.06-13+deb12u2", "amd64",
                             "c04786d9f64fbf7cd181013266a8af52b463599cc54189915d03f1459e743135",
                             source="grub2")
# the arm64 EFI bootloaders (cross-arch: plain files, nothing of them runs at build time)
SYSTEMD_BOOT_EFI_ARM64 = PoolDeb("systemd-boot-efi", "252.39-1~deb12u2", "arm64",
                                 "d75fbbfa90d37d409e7e65f1149afd770bc17daa3f15f49ef651f608fe7e1dbc",
                                 source="systemd")
GRUB_EFI_ARM64_BIN = PoolDeb("grub-efi-arm64-bin", "2.06-13+deb12u2", "arm64",
                             "04e469e0221a357bfe0a1f0fc558f08a92edf99ef13c321aa9ea1e04951a2914",
                             source="grub2")
# the Raspberry Pi 3 (format rpi3): the Pi's boot firmware (Debian's component
# non-free-firmware) and u-boot's 64-bit Pi 3 build
RASPI_FIRMWARE = PoolDeb("raspi-firmware", "1.20220830+ds-1", "all",
                         "0094ced47a7fbb6a220ff83e7b43aa637a5d8f6802461e2e4e474597fb796f62",
                         component="non-free-firmware")
U_BOOT_RPI = PoolDeb("u-boot-rpi", "2023.01+dfsg-2+deb12u3", "arm64",
                     "3722f286cfafca03f4cac7adade04fccf66158ad8467501b9deabd154162b5e8",
                     source="u-boot")
_RPI = "usr/lib/raspi-firmware/"
RPI_FIRMWARE_SHA256 = {
    "bootcode.bin": "098d5a2a61c485f757733390244319d4c992807e21ffd4e199b88de42d6e52ff",
    "fixup.dat": "d07e005f90a24f46d0e8094dadd470593d333f028d9d0e5cf6fac7eb83654280",
    "fixup_cd.dat": "b4df5747bfbdb77b1316f714f62aa6223fe918cf27d6b5e2e8f5f3d8335b937c",
    "fixup_x.dat": "8c30bd1d3a77414c9f324350ece49df4a43ae941d00da732e97e72b40dcac080",
    "start.elf": "9ab4a7281be2ae3c720b4d80209e3bf73dd5e787438e30d6a6820887d2e1adcc",
    "start_cd.elf": "ffc3dd37e697c0a42020865a6ed460fdd09f084c41fa0d8f0697d36ef17304c0",
    "start_x.elf": "a9d92552de31a6bbec03e90eb2d8dfd672c0abd3bc2d5a20e93927edc9c49dcd",
}

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
    # the disk formats: syslinux's mtools installer (it carries ldlinux.sys and ldlinux.c32),
    # the BIOS disk MBR code, systemd-boot and the UKI's EFI stub
    "syslinux": DebFile(
        SYSLINUX, "usr/bin/syslinux",
        "18e7f81692f20f3f849bbb5230d52fa4bbe915bb0200d8c5bf2b22180e1650c7"),
    "mbr.bin": DebFile(
        SYSLINUX_COMMON, "usr/lib/syslinux/mbr/mbr.bin",
        "4746f74bc9b9d3d579c41988a4a29bb7ac932ad1c70470ea779ea161eb799b64"),
    "sd-boot.efi": DebFile(
        SYSTEMD_BOOT_EFI, "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        "10288fece5e90ce3ba3e7160f49695b022d648f7ef41774678db8c77774db167"),
    "efi.stub": DebFile(
        SYSTEMD_BOOT_EFI, "usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "c62ae56ffaf49d1a61de4434f4f531dd1d4ed3b5aee46c934c56e3f809b22cc4"),
    # arm64: the same roles' files for the AArch64 UEFI (EFI/BOOT/BOOTAA64.EFI)
    "bootaa64.efi": DebFile(
        GRUB_EFI_ARM64_BIN, "usr/lib/grub/arm64-efi/monolithic/gcdaa64.efi",
        "cc00b3b9c2a5097346513f956244497b740712726da27a4cfe196d34c4f962e4"),
    "sd-bootaa64.efi": DebFile(
        SYSTEMD_BOOT_EFI_ARM64, "usr/lib/systemd/boot/efi/systemd-bootaa64.efi",
        "e11ba35ebe4f4b78d4569a63fe30b4a9d033ab92b83cda375e645ac76330b49f"),
    "efiaa64.stub": DebFile(
        SYSTEMD_BOOT_EFI_ARM64, "usr/lib/systemd/boot/efi/linuxaa64.efi.stub",
        "e937f97467a4cebf48189e1f1348025c03d69bdee82a31cb2cf7e8307cb51dbf"),
    # rpi3: the firmware files linuxkit puts on the card, each under its own name (the role);
    # LICENCE.broadcom is Debian's copyright file of the package, which carries the Broadcom
    # licence (whose terms ask for it to go along); u-boot.bin is u-boot's rpi_3 build
    **{role: DebFile(RASPI_FIRMWARE, _RPI + role, sha)
       for role, sha in RPI_FIRMWARE_SHA256.items()},
    "LICENCE.broadcom": DebFile(
        RASPI_FIRMWARE, "usr/share/doc/raspi-firmware/copyright",
        "b42abc27eb1f944c7082a8358cec668fa680b3db8f9690f37e48b59ff8f4d795"),
    "u-boot.bin": DebFile(
        U_BOOT_RPI, "usr/lib/u-boot/rpi_3/u-boot.bin",
        "ab6647b5621e5220b2e8e09a274e19c063a86df14426aa86e6a62d6655ec01cd"),
}
