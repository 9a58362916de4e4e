"""The build pipeline: spec -> resolved images -> canonical rootfs tar -> outputs.

Each stage is its own module; this one only strings them together and guarantees that outputs
appear all at once or not at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from composer.epoch import resolve_epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.rootfs.assemble import Context, build_tree, write_tree
from composer.spec.model import ImageRef, Spec
from composer.tarcanon import CanonError


@dataclass(frozen=True)
class BuildRequest:
    specs: tuple[Path, ...]
    formats: tuple[str, ...]
    output_dir: Path
    name: str
    arch: str
    cache_dir: Path
    pull: bool = False
    offline: bool = False
    source_date_epoch: int | None = None


def spec_images(spec: Spec) -> list[ImageRef]:
    """Every image a spec uses, in spec order, each distinct text once."""
    refs: list[ImageRef] = []
    if spec.kernel is not None:
        refs.append(spec.kernel.image)
    refs.extend(spec.init)
    for section in (spec.onboot, spec.onshutdown, spec.services):
        refs.extend(c.image for c in section)
    seen: set[str] = set()
    return [r for r in refs if not (r.text in seen or seen.add(r.text))]


def resolve_images(spec: Spec, cache: Cache, *, arch: str, pull: bool, offline: bool,
                   log: Callable[[str], None]) -> dict[str, Image]:
    from composer.images.resolve import resolve_image

    images: dict[str, Image] = {}
    for ref in spec_images(spec):
        base = Path(ref.pos.file).parent if ref.pos else Path.cwd()
        try:
            images[ref.text] = resolve_image(ref.text, cache=cache, arch=arch, pull=pull,
                                             offline=offline, base_dir=base, log=log)
        except ComposerError as exc:
            where = f"{ref.pos}: " if ref.pos else ""
            raise ComposerError(f"{where}{exc}") from exc
    return images


def run_build(req: BuildRequest, log: Callable[[str], None]) -> list[Path]:
    from composer.spec import load_spec
    from outputs import FORMATS, Options

    epoch = resolve_epoch(req.source_date_epoch)
    spec = load_spec(list(req.specs))
    for pos, message in spec.warnings:
        log(f"{pos}: warning: {message}" if pos else f"warning: {message}")
    cache = Cache(req.cache_dir)
    images = resolve_images(spec, cache, arch=req.arch, pull=req.pull, offline=req.offline,
                            log=log)
    tree = build_tree(spec, Context(cache, epoch, images))
    from composer.atomic import OutputSet

    req.output_dir.mkdir(parents=True, exist_ok=True)
    fd, rootfs = tempfile.mkstemp(dir=req.output_dir, prefix=f".{req.name}.", suffix=".rootfs")
    try:
        with os.fdopen(fd, "wb") as fh:
            count = write_tree(tree, fh, epoch)
        log(f"rootfs: {count} entries")
        with OutputSet(req.output_dir) as outs:
            options = Options(mtime=epoch.generated)
            for fmt in req.formats:
                FORMATS[fmt](Path(rootfs), req.name, outs, options)
            return outs.commit()
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rootfs)
