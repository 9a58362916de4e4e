"""Benchmarks: image-composer side by side with the C-tool pipelines a user would script.

    python -m bench [--workload tiny|small|many|large|huge] [--runs N]
                    [--only phase1,initrd,iso,disk,linuxkit] [--linuxkit PATH]

Rows (``--only`` picks groups; ``phase1`` always runs, the others start from its results):

- phase1: a cold ``build -f tar`` (pull from an OCI layout into an empty cache, flatten, write
  the canonical tar) vs ``skopeo copy`` + ``umoci raw unpack`` + ``tar --sort=name ...``; a
  no-op rebuild into the same output dir, and a rebuild into a fresh output dir, each vs the
  cold build;
- initrd: the initrd of ``kernel+initrd`` from the rootfs tar vs ``find | sort | cpio -o -H newc
  --reproducible | gzip -n -6`` on the unpacked tree;
- iso: the whole ``iso-bios`` conversion (initrd included) vs that cpio pipeline plus
  ``xorriso -as mkisofs``; and the ISO writing alone vs ``xorriso -as mkisofs`` alone, on the
  same kernel, initrd and isolinux files;
- disk: ``build -f raw-efi`` with phase one cached (the phase-two output cache, CACHE/outputs,
  removed before each timed build) vs cpio|gzip + ``objcopy --add-section`` (the UKI, as
  systemd's docs show; Debian 12 has no ``ukify``) + ``mkfs.vfat -C`` + ``mmd``/``mcopy`` of
  systemd-boot, the UKI and loader.conf + ``truncate`` + ``sgdisk`` + ``dd conv=notrunc``; and
  ``build -f qcow2-efi`` vs the same with GRUB (gcdx64.efi + grub.cfg, kernel, initrd) plus
  ``qemu-img convert -O qcow2``. Both sides use the project's pinned bootloader files.

- linuxkit (with ``--linuxkit PATH``; skipped with a note otherwise): the real ``linuxkit build``
  against ours on one spec served by a loopback ``docker-registry``: cold ``-f tar``, warm and
  unchanged ``-f kernel+initrd``, one row per ``--initrd-compression``, and both caches' size
  (:mod:`bench.linuxkit`). ``--workload many`` is the many-small-files workload.

Each contender runs as a separate process under ``/usr/bin/time`` (wall seconds and peak RSS);
medians over ``--runs``. Results go to stdout and to bench/RESULTS.md with the machine described
(``--only phase1,initrd,disk --results bench/RESULTS-disk.md`` for the disk rows). Build time,
size and peak RSS of every disk, cloud and fsimage format alone: ``python -m bench.formats``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.workload import WORKLOADS, generate, kernel_file
from outputs import bootloaders
from outputs.disk.layouts import LAYOUTS as DISK_LAYOUTS
from outputs.disk.layouts import grub_cfg
from outputs.iso.formats import isolinux_cfg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EPOCH = "1700000000"
CMDLINE = "console=ttyS0"
GROUPS = ("phase1", "initrd", "iso", "disk", "linuxkit")


@dataclass
class Measure:
    seconds: float
    rss_mb: float
    cpu: float = 0.0  # user + system seconds: steadier than wall time on a shared machine


def timed(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> Measure:
    """Run under GNU time; wall clock, peak RSS of the process tree's largest member, CPU."""
    with tempfile.NamedTemporaryFile("r") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "-o", out.name, *argv],
                              cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
        seconds, kb, user, system = out.read().split()[-4:]
    return Measure(float(seconds), int(kb) / 1024, float(user) + float(system))


def combined(parts: list[Measure]) -> Measure:
    """Steps run one after another: times add up, the peak RSS is the largest step's."""
    return Measure(sum(p.seconds for p in parts), max(p.rss_mb for p in parts),
                   sum(p.cpu for p in parts))


def pipeline(steps: list[list[str]], cwd: Path | None = None) -> Measure:
    return combined([timed(s, cwd=cwd) for s in steps])


def composer(*args: str) -> list[str]:
    return [sys.executable, "-m", "composer", *args]


def phase_one(layout: Path, scratch: Path, n: int) -> dict[str, tuple[Measure, Measure]]:
    spec = scratch / "bench.yml"
    spec.write_text(f"init:\n  - oci:{layout}:bench\n")
    ours_dir, theirs_dir = scratch / f"ours{n}", scratch / f"theirs{n}"
    build = composer("build", "-f", "tar", "-o", str(ours_dir), "--cache",
                     str(ours_dir / "cache"), "--source-date-epoch", EPOCH, str(spec))
    ours = timed(build)
    noop = timed(build)
    fresh = timed(composer("build", "-f", "tar", "-o", str(scratch / f"fresh{n}"), "--cache",
                           str(ours_dir / "cache"), "--source-date-epoch", EPOCH, str(spec)))
    theirs_dir.mkdir()
    theirs = pipeline([
        ["skopeo", "copy", "--quiet", f"oci:{layout}:bench", f"oci:{theirs_dir / 'oci'}:bench"],
        ["umoci", "raw", "unpack", "--image", f"{theirs_dir / 'oci'}:bench",
         str(theirs_dir / "rootfs")],
        ["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
         f"--mtime=@{EPOCH}", "-cf", str(theirs_dir / "rootfs.tar"), "-C",
         str(theirs_dir / "rootfs"), "."],
    ])
    return {"phase one (pull+flatten+tar)": (ours, theirs),
            "no-op rebuild, same output dir, vs cold build": (noop, ours),
            "rebuild into a fresh output dir vs cold build": (fresh, ours)}


CPIO_GZIP = ("find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible "
             "| gzip -n -6 > {out}")


def initrd(scratch: Path, n: int) -> dict[str, tuple[Measure, Measure]]:
    """kernel+initrd from the rootfs tar vs find|sort|cpio|gzip -6 on the unpacked tree."""
    rootfs_tar = scratch / "ours0" / "bench.tar"
    out = scratch / f"initrd{n}"
    out.mkdir()
    ours = timed([sys.executable, "-m", "bench.initrd_only", str(rootfs_tar),
                  str(out / "ours.img")], cwd=ROOT)
    tree = scratch / "theirs0" / "rootfs"
    theirs = timed(["sh", "-c", CPIO_GZIP.format(out=out / "theirs.img")], cwd=tree)
    return {"initrd (cpio+gzip -6)": (ours, theirs)}


def xorriso(tree: Path, out: Path) -> list[str]:
    """What a user would script for a BIOS-bootable hybrid ISO of ``tree`` (isolinux)."""
    return ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-R", "-V", "BENCH",
            "-b", "isolinux/isolinux.bin", "-c", "boot/boot.cat", "-no-emul-boot",
            "-boot-load-size", "4", "-boot-info-table",
            "-isohybrid-mbr", str(_isohdpfx(out.parent)), str(tree)]


def pinned(roles: tuple[str, ...]) -> dict[str, bytes]:
    """The project's default bootloader files by role (out of their pinned Debian packages),
    so both sides of a row boot the same bytes."""
    return bootloaders.load_all(bootloaders.resolve(roles))


def _isohdpfx(directory: Path) -> Path:
    """The pinned isohybrid MBR code as a file, for xorriso."""
    path = directory / "isohdpfx.bin"
    path.write_bytes(pinned((bootloaders.ISOHDPFX,))[bootloaders.ISOHDPFX])
    return path


def iso(layout: Path, kernel: Path, scratch: Path, n: int) -> dict[str, tuple[Measure, Measure]]:
    """iso-bios on the phase-one rootfs plus a kernel, vs cpio|gzip + xorriso on the same files."""
    spec = scratch / "iso.yml"
    spec.write_text(f"init:\n  - oci:{layout}:bench\nfiles:\n  - path: boot/kernel\n"
                    f"    source: {kernel}\n  - path: boot/cmdline\n    contents: \"{CMDLINE}\"\n")
    rootfs = scratch / f"isoroot{n}"
    subprocess.run(composer("build", "-q", "-f", "tar", "-o", str(rootfs), "--cache",
                            str(scratch / "ours0" / "cache"), "--source-date-epoch", EPOCH,
                            str(spec)), check=True, stdout=subprocess.DEVNULL)
    ours = timed([sys.executable, "-m", "bench.iso_only", str(rootfs / "iso.tar"),
                  str(scratch / f"iso-ours{n}")], cwd=ROOT)
    files = scratch / f"isofiles{n}"
    (files / "boot").mkdir(parents=True)
    (files / "isolinux").mkdir()
    shutil.copyfile(kernel, files / "boot" / "kernel")
    (files / "boot" / "cmdline").write_text(CMDLINE)
    for role, data in pinned((bootloaders.ISOLINUX, bootloaders.LDLINUX)).items():
        (files / "isolinux" / role).write_bytes(data)
    (files / "isolinux" / "isolinux.cfg").write_bytes(isolinux_cfg(CMDLINE))
    initrd_step = timed(["sh", "-c", CPIO_GZIP.format(out=files / "boot" / "initrd.img")],
                        cwd=scratch / "theirs0" / "rootfs")
    xorriso_step = timed(xorriso(files, scratch / f"iso-theirs{n}.iso"))
    theirs = combined([initrd_step, xorriso_step])
    assembly = timed([sys.executable, "-m", "bench.iso_assemble", str(files),
                      str(scratch / f"iso-assembled{n}.iso")], cwd=ROOT)
    return {"iso-bios, initrd included (cpio+gzip -6 + xorriso)": (ours, theirs),
            "ISO writing alone (xorriso -as mkisofs)": (assembly, xorriso_step)}


def boot_spec(layout: Path, kernel: Path, scratch: Path, name: str = "iso") -> Path:
    """The workload's image plus a kernel and command line: what the bootable formats need."""
    spec = scratch / f"{name}.yml"
    spec.write_text(f"init:\n  - oci:{layout}:bench\nfiles:\n  - path: boot/kernel\n"
                    f"    source: {kernel}\n  - path: boot/cmdline\n    contents: \"{CMDLINE}\"\n")
    return spec


def build_format(fmt: str, spec: Path, cache: Path, out: Path) -> Measure:
    """``build -f FMT`` with phase one cached and the phase-two output cache removed first."""
    shutil.rmtree(cache / "outputs", ignore_errors=True)
    return timed(composer("build", "-q", "-f", fmt, "-o", str(out), "--cache", str(cache),
                          "--source-date-epoch", EPOCH, str(spec)), cwd=ROOT)


def esp_and_disk(files: dict[str, Path], work: Path, disk: Path) -> list[list[str]]:
    """mkfs.vfat + mmd + mcopy of ``files`` (ESP path -> host file), then a GPT disk of the ESP
    (truncate + sgdisk + dd): what a user would script. Sized as ours: the files, 2% and 4 MiB."""
    need = sum(p.stat().st_size for p in files.values())
    esp_mib = -(-(need + need // 50 + (4 << 20)) // 2**20)
    esp = work / "esp.img"
    dirs = sorted({name.rsplit("/", i)[0] for name in files for i in range(1, name.count("/") + 1)},
                  key=lambda d: (d.count("/"), d))
    steps = [["mkfs.vfat", "-F", "32" if esp_mib >= 512 else "16", "-n", "ESP", "-i", "12345678",
              "-C", str(esp), str(esp_mib * 1024)]]
    if dirs:
        steps.append(["mmd", "-i", str(esp), *(f"::/{d}" for d in dirs)])
    steps += [["mcopy", "-i", str(esp), str(src), f"::/{name}"] for name, src in files.items()]
    disk_mib = esp_mib + 4
    steps += [["truncate", "-s", f"{disk_mib}M", str(disk)],
              ["sgdisk", "-q", "-n", f"1:2048:+{esp_mib}M", "-t", "1:ef00", "-c", "1:EFI System",
               str(disk)],
              ["dd", "status=none", f"if={esp}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc"]]
    return steps


def objcopy_uki(stub: Path, kernel: Path, initrd: Path, cmdline: Path, osrel: Path,
                out: Path) -> list[str]:
    """The UKI as systemd's docs script it with binutils (fixed section addresses)."""
    return ["objcopy",
            "--add-section", f".osrel={osrel}", "--change-section-vma", ".osrel=0x20000",
            "--add-section", f".cmdline={cmdline}", "--change-section-vma", ".cmdline=0x30000",
            "--add-section", f".linux={kernel}", "--change-section-vma", ".linux=0x2000000",
            "--add-section", f".initrd={initrd}", "--change-section-vma", ".initrd=0x3000000",
            str(stub), str(out)]


def disk(layout: Path, kernel: Path, scratch: Path, n: int) -> dict[str, tuple[Measure, Measure]]:
    """raw-efi and qcow2-efi from the cached phase one vs the C-tool pipelines on the tree."""
    spec = boot_spec(layout, kernel, scratch)
    cache = scratch / "ours0" / "cache"
    subprocess.run(composer("build", "-q", "-f", "tar", "-o", str(scratch / f"diskroot{n}"),
                            "--cache", str(cache), "--source-date-epoch", EPOCH, str(spec)),
                   check=True, stdout=subprocess.DEVNULL)
    tree = scratch / "theirs0" / "rootfs"
    rows: dict[str, tuple[Measure, Measure]] = {}
    for fmt in ("raw-efi", "qcow2-efi"):
        ours = build_format(fmt, spec, cache, scratch / f"disk-ours-{fmt}{n}")
        work = scratch / f"disk-theirs-{fmt}{n}"
        work.mkdir()
        for role, data in pinned(DISK_LAYOUTS[fmt].roles).items():
            (work / role).write_bytes(data)
        (work / "cmdline").write_text(CMDLINE)
        initrd = work / "initrd.img"
        steps = [["sh", "-c", CPIO_GZIP.format(out=initrd)]]
        if fmt == "raw-efi":
            (work / "os-release").write_text('NAME="image-composer"\n')
            (work / "loader.conf").write_text("timeout 0\n")
            steps.append(objcopy_uki(work / bootloaders.EFI_STUB, kernel, initrd,
                                     work / "cmdline", work / "os-release", work / "uki.efi"))
            files = {"EFI/BOOT/BOOTX64.EFI": work / bootloaders.SYSTEMD_BOOT,
                     "loader/loader.conf": work / "loader.conf",
                     "EFI/Linux/linuxkit.efi": work / "uki.efi"}
        else:
            (work / "grub.cfg").write_bytes(grub_cfg(CMDLINE))
            files = {"EFI/BOOT/BOOTX64.EFI": work / bootloaders.GRUB_EFI,
                     "EFI/BOOT/grub.cfg": work / "grub.cfg",
                     "boot/grub/grub.cfg": work / "grub.cfg",
                     "kernel": kernel, "initrd.img": initrd}
        first = [timed(s, cwd=tree if i == 0 else work) for i, s in enumerate(steps)]
        rest = esp_and_disk(files, work, work / "disk.img")  # sized once the files exist
        if fmt == "qcow2-efi":
            rest.append(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "disk.img"),
                         str(work / "disk.qcow2")])
        parts = first + [timed(s, cwd=work, env=MTOOLS_ENV) for s in rest]
        theirs = combined(parts)
        STEPS.setdefault(fmt, []).append(
            [(_step_name(argv), m) for argv, m in zip(steps + rest, parts, strict=True)])
        what = ("raw-efi (cpio+gzip -6, objcopy UKI, mkfs.vfat+mcopy, sgdisk+dd)"
                if fmt == "raw-efi" else
                "qcow2-efi (cpio+gzip -6, mkfs.vfat+mcopy GRUB, sgdisk+dd, qemu-img convert)")
        rows[what] = (ours, theirs)
    return rows


MTOOLS_ENV = os.environ | {"MTOOLS_SKIP_CHECK": "1"}
STEPS: dict[str, list[list[tuple[str, Measure]]]] = {}  # the C side's steps, per run


def _step_name(argv: list[str]) -> str:
    return "cpio|gzip -6" if argv[0] == "sh" else argv[0]


def step_lines() -> list[str]:
    """Where the C pipelines' time goes (first run), for the notes under the table."""
    lines = []
    for fmt, runs in STEPS.items():
        merged: dict[str, Measure] = {}
        for name, m in runs[0]:
            merged[name] = combined([merged[name], m]) if name in merged else m
        lines.append(f"C-side steps of {fmt} (wall/CPU s, peak RSS MB): " + ", ".join(
            f"{name} {m.seconds:.2f}/{m.cpu:.2f}/{m.rss_mb:.0f}" for name, m in merged.items()))
    return lines


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from composer.streams.gz import compressor_id

    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, deflate {compressor_id()}")


def _loads(loads: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in loads)


def load_line(start: tuple[float, float, float],
              end: tuple[float, float, float] | None = None) -> str:
    """The results' load-average sentence: wall times mean little without it."""
    end = os.getloadavg() if end is None else end
    return (f"Load average (1/5/15 min) at start {_loads(start)}, at end {_loads(end)}, on "
            f"{os.cpu_count()} cores.")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--workload", default="small", choices=sorted(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(GROUPS),
                        help="row groups: phase1 (always run), initrd, iso, disk, linuxkit")
    parser.add_argument("--linuxkit", type=Path, default=os.environ.get("LINUXKIT"),
                        metavar="PATH", help="a linuxkit binary for the linuxkit rows "
                        "(../shared/tools/build-linuxkit.sh builds one); without it they are "
                        "skipped with a note")
    parser.add_argument("--work-dir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    only = set(args.only.split(","))
    tools = ["skopeo", "umoci", "tar", "cpio", "gzip", "xorriso", "/usr/bin/time"]
    if "disk" in only:
        tools += ["objcopy", "mkfs.vfat", "mmd", "mcopy", "truncate", "sgdisk", "dd", "qemu-img"]
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is required (scripts/setup.sh --test installs it)")
    work = WORKLOADS[args.workload]
    print(f"bench: generating workload {work} ...", file=sys.stderr)
    layout = generate(work, args.work_dir / work.key)
    kernel = kernel_file(args.work_dir)
    rows: dict[str, list[tuple[Measure, Measure]]] = {}
    unknown = only - set(GROUPS)
    if unknown:
        sys.exit(f"bench: unknown --only group(s): {', '.join(sorted(unknown))}")
    notes: list[str] = []
    if "linuxkit" in only and args.linuxkit is None:
        only.discard("linuxkit")
        notes.append("linuxkit rows skipped: no linuxkit binary given (--linuxkit PATH or "
                     "LINUXKIT=PATH; ../shared/tools/build-linuxkit.sh GITDIR OUT builds one).")
        print(f"bench: {notes[-1]}", file=sys.stderr)
    elif "linuxkit" in only and not os.access(args.linuxkit, os.X_OK):
        sys.exit(f"bench: --linuxkit {args.linuxkit}: not an executable")
    load_start = os.getloadavg()
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            scratch = Path(tmp)
            results = phase_one(layout, scratch, 0)
            if "initrd" in only:
                results |= initrd(scratch, n)
            if "iso" in only:
                results |= iso(layout, kernel, scratch, n)
            if "disk" in only:
                results |= disk(layout, kernel, scratch, n)
            if "linuxkit" in only:
                from bench import linuxkit

                found, lk_notes = linuxkit.rows(args.linuxkit, layout, kernel, scratch, n,
                                                epoch=EPOCH, timed=timed, composer=composer)
                results |= found
                if n == 0:
                    notes += lk_notes
            for key, pair in results.items():
                rows.setdefault(key, []).append(pair)
            print(f"bench: run {n + 1}/{args.runs} done", file=sys.stderr)
    lines = [f"# Benchmark results ({work.name}: {work.total_bytes // 2**20} MiB, "
             f"{work.files} files, {work.layers} layers)", "", machine(), "",
             "| what | image-composer s | other s | ratio | image-composer peak RSS MB | "
             "other peak RSS MB | image-composer CPU s | other CPU s | CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, pairs in rows.items():
        ours = statistics.median(p[0].seconds for p in pairs)
        theirs = statistics.median(p[1].seconds for p in pairs)
        rss_o = max(p[0].rss_mb for p in pairs)
        rss_t = max(p[1].rss_mb for p in pairs)
        cpu_o = statistics.median(p[0].cpu for p in pairs)
        cpu_t = statistics.median(p[1].cpu for p in pairs)
        lines.append(f"| {key} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | "
                     f"{rss_o:.0f} | {rss_t:.0f} | {cpu_o:.2f} | {cpu_t:.2f} | "
                     f"{cpu_o / max(cpu_t, 0.01):.2f}x |")
    lines += ["", f"Medians of {args.runs} runs; regenerate with "
              f"`python -m bench --workload {work.name} --runs {args.runs}"
              + (f" --only {args.only}" if args.only != ",".join(GROUPS) else "")
              + (" --linuxkit PATH" if "linuxkit" in only else "") + "`.",
              "", "Ratio: image-composer time / other time (below 1.00x, image-composer is "
              "faster). No-op rows compare a rebuild with the cold build. CPU: user + system "
              "seconds of each process tree.",
              "", load_line(load_start)]
    if notes:
        lines += ["", *notes]
    if STEPS:
        lines += ["", *step_lines()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
