"""The virtual-disk containers in one table, for the disk formats to call.

Each entry says how a container is written from a finished raw disk and what virtual size
linuxkit gives it, so a format is ``fit(raw, container) ; container.write(raw, out, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from outputs.disk import gcp, qcow2, vhd, vmdk
from outputs.disk.rawscan import LINUXKIT_SIZES, GiB, pad_raw, round_up

Writer = Callable[[Path, BinaryIO, int, bytes], None]  # raw, out, epoch, seed


@dataclass(frozen=True)
class Container:
    name: str
    write: Writer
    fixed_size: int | None  # linuxkit's virtual size; None: the raw's own size
    unit: int  # the virtual size is rounded up to a multiple of this
    compressor: Callable[[], str] | None = None  # names what shapes compressed bytes


CONTAINERS: dict[str, Container] = {
    "qcow2": Container("qcow2", lambda raw, out, epoch, seed: qcow2.write_qcow2(raw, out),
                       None, 512),
    "vhd": Container("vhd", lambda raw, out, epoch, seed: vhd.write_vhd_fixed(
        raw, out, epoch=epoch, seed=seed), LINUXKIT_SIZES["vhd"], 1 << 20),
    "dynamic-vhd": Container("dynamic-vhd", lambda raw, out, epoch, seed: vhd.write_vhd_dynamic(
        raw, out, epoch=epoch, seed=seed), LINUXKIT_SIZES["dynamic-vhd"], 512),
    "vmdk": Container("vmdk", lambda raw, out, epoch, seed: vmdk.write_vmdk(
        raw, out, seed=seed), LINUXKIT_SIZES["vmdk"], 512, vmdk.compressor_id),
    "gcp": Container("gcp", lambda raw, out, epoch, seed: gcp.write_gcp(
        raw, out, epoch=epoch), LINUXKIT_SIZES["gcp"], GiB,
        lambda: gcp.compressor_id(gcp.LEVEL)),
}


def fit(raw: Path, container: Container, size: int | None = None) -> int:
    """Grow ``raw`` (with a hole) to the container's virtual size: ``size`` if given (a
    ``--size``), else linuxkit's fixed size, else its own, rounded up to the container's unit.
    A raw larger than a fixed size is an ``error:``. Returns the virtual size."""
    current = raw.stat().st_size
    target = size if size is not None else container.fixed_size or current
    target = round_up(max(target, 1), container.unit)
    pad_raw(raw, target)
    return target
