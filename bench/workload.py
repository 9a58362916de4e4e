"""Deterministic synthetic images for benchmarks: many files, mixed sizes, hard links,
overwrites and whiteouts across layers, written straight to an OCI layout without ever holding
a layer in memory.

The content is pseudo-random from a fixed seed (these are benchmark *inputs*; nothing random
reaches an image-composer output), half of it compressible text, half incompressible bytes.
Layers are gzipped by Python's :mod:`gzip` on purpose: they stand for images made by other tools.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.images.cache import Cache
from composer.oci.media import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from composer.streams.digest import HashingWriter


@dataclass(frozen=True)
class Workload:
    name: str
    total_bytes: int
    files: int
    layers: int

    @property
    def key(self) -> str:
        return f"{self.name}-{self.total_bytes}-{self.files}-{self.layers}-v1"


WORKLOADS = {
    "tiny": Workload("tiny", 5 * 2**20, 500, 3),
    "small": Workload("small", 50 * 2**20, 5_000, 5),
    "large": Workload("large", 2**30, 50_000, 10),
    "huge": Workload("huge", 2 * 2**30, 100_000, 10),
    # many small files: per-entry costs dominate (issue 19's second phase-one workload)
    "many": Workload("many", 200 * 2**20, 100_000, 4),
}


def _sizes(rng: random.Random, count: int, total: int) -> list[int]:
    """Mostly small files, a few large ones, summing to about ``total``."""
    weights = [rng.paretovariate(1.2) for _ in range(count)]
    scale = total / sum(weights)
    return [max(0, int(w * scale)) for w in weights]


def _content(rng: random.Random, size: int, text: bytes) -> bytes:
    if size == 0:
        return b""
    if rng.random() < 0.5:
        return (text * (size // len(text) + 1))[:size]
    return rng.randbytes(size)


def kernel_file(dest: Path, size: int = 8 << 20) -> Path:
    """A stand-in kernel for the ISO row: ``size`` pseudo-random bytes from a fixed seed."""
    path = dest / "kernel"
    if not path.is_file() or path.stat().st_size != size:
        path.write_bytes(random.Random("bench kernel").randbytes(size))
    return path


def generate(work: Workload, dest: Path, tag: str = "bench") -> Path:
    """An OCI layout at ``dest`` (reused if already complete) with one image tagged ``tag``."""
    done = dest / f".complete-{work.key}"
    if done.exists():
        return dest
    store = Cache(dest)
    rng = random.Random(work.key)
    text = b"".join(b"line %d of some compressible configuration text\n" % i
                    for i in range(200))
    per_layer = work.files // work.layers
    dirs = [f"usr/share/d{i:03d}/s{j:02d}" for i in range(100) for j in range(10)]
    written: list[str] = []
    layers, diff_ids = [], []
    tmp = dest / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for n in range(work.layers):
        sizes = _sizes(rng, per_layer, work.total_bytes // work.layers)
        raw_path = tmp / f"layer{n}.tar.gz"
        with open(raw_path, "wb") as raw:
            compressed = HashingWriter(raw)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=1,
                               mtime=0) as gz:
                plain = HashingWriter(gz)
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    if n:
                        for victim in rng.sample(written, min(len(written), per_layer // 50)):
                            head, _, base = victim.rpartition("/")
                            info = tarfile.TarInfo(f"{head}/.wh.{base}")
                            tf.addfile(info)
                    for i, size in enumerate(sizes):
                        path = f"{rng.choice(dirs)}/f{n:02d}-{i:06d}"
                        info = tarfile.TarInfo(path)
                        info.mtime = 1_600_000_000 + n
                        if i % 97 == 0 and i:
                            info.type, info.linkname = tarfile.LNKTYPE, written[-1]
                            tf.addfile(info)
                        else:
                            data = _content(rng, size, text)
                            info.size, info.mode = len(data), 0o644
                            tf.addfile(info, io.BytesIO(data))
                        written.append(path)
        digest = compressed.digest
        with open(raw_path, "rb") as fh:
            store.put_blob(fh, digest, compressed.size, f"layer {n}")
        os.unlink(raw_path)
        layers.append({"mediaType": OCI_LAYER_GZIP, "digest": digest,
                       "size": compressed.size})
        diff_ids.append(plain.digest)
    config = canonjson.compact({"architecture": "amd64", "os": "linux", "config": {},
                                "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    manifest = canonjson.compact({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": store.put_bytes(config),
                   "size": len(config)},
        "layers": layers})
    store.tag(tag, {"mediaType": OCI_MANIFEST, "digest": store.put_bytes(manifest),
                    "size": len(manifest)})
    _tidy(dest)
    done.touch()
    return dest


def _tidy(dest: Path) -> None:
    """Leave a plain OCI layout: drop the cache's own side directories and lock file."""
    for stray in ("uncompressed", "tmp"):
        if (dest / stray).exists():
            for p in sorted((dest / stray).rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            (dest / stray).rmdir()
    (dest / "lock").unlink(missing_ok=True)


def kernel_image(kernel: Path, dest: Path, tag: str = "kernel") -> Path:
    """An OCI layout at ``dest`` with one image tagged ``tag``: ``kernel`` as its only file
    (linuxkit's default name), for the rows that need a kernel image rather than ``files:``."""
    store = Cache(dest)
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz:
        plain = HashingWriter(gz)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo("kernel")
            info.size, info.mode, info.mtime = kernel.stat().st_size, 0o644, 1_600_000_000
            with open(kernel, "rb") as fh:
                tf.addfile(info, fh)
    layer = raw.getvalue()
    config = canonjson.compact({"architecture": "amd64", "os": "linux", "config": {},
                                "rootfs": {"type": "layers", "diff_ids": [plain.digest]}})
    manifest = canonjson.compact({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": store.put_bytes(config),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": store.put_bytes(layer),
                    "size": len(layer)}]})
    store.tag(tag, {"mediaType": OCI_MANIFEST, "digest": store.put_bytes(manifest),
                    "size": len(manifest)})
    _tidy(dest)
    return dest
