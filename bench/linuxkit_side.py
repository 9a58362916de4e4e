"""linuxkit's own examples built side by side by the real linuxkit and by image-composer.

    python -m bench.linuxkit_side GITDIR LINUXKIT [--only NAME,...] [--keep DIR]

GITDIR is a git directory of github.com/linuxkit/linuxkit, LINUXKIT its binary (built by
``/work/shared/tools/build-linuxkit.sh``). Every ``examples/*.yml`` is built into ``tar`` by
both tools against the same stand-in images (tests/fixtures/linuxkit.py: the real packages'
``org.mobyproject.config`` labels and image configs, made-up files), pushed to a loopback
``docker-registry`` with skopeo; the specs' image names are rewritten to that registry, the same
text for both tools. Then the two rootfs trees are compared as an unpacker sees them (linuxkit's
tar has duplicates: the last entry of a path wins; ``LINUXKIT.*`` records and mtimes are left
out; bundles' ``config.json``/``runtime.json`` are compared as JSON values, since Go writes
struct order and we write sorted keys) and every difference is printed, grouped by kind. Not
part of CI: it needs linuxkit's binary; docs/linuxkit-differences.md records its result and
explains each difference left.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from composer.images.cache import Cache  # noqa: E402
from composer.images.write import write_image  # noqa: E402
from composer.oci.refs import Ref, parse_ref  # noqa: E402
from composer.spec import load_spec  # noqa: E402
from tests.fixtures.images import (  # noqa: E402
    attested_index,
    clean_layout,
    export_index,
    spdx_sbom,
)
from tests.fixtures.linuxkit import local_name, rewrite, roles, stand_in  # noqa: E402

Tree = dict[str, tuple]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    shutil.rmtree(base, ignore_errors=True)
    (base / "storage").mkdir(parents=True)
    config = base / "config.yml"
    config.write_text("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {base / 'storage'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("docker-registry did not start")


def read_tree(path: Path) -> Tree:
    """Path -> (kind, mode, uid, gid, linkname, sha256) as an unpacker ends up with it."""
    out: Tree = {}
    with tarfile.open(path) as tf:
        for m in tf:
            name = m.name.rstrip("/")
            name = name[2:] if name.startswith("./") else name
            if name in ("", "."):  # linuxkit copies kernel.tar's "./" entry
                out["."] = ("dir", m.mode & 0o7777, m.uid, m.gid, "", "")
                continue
            digest = ""
            if m.isfile():
                fh = tf.extractfile(m)
                data = fh.read() if fh else b""
                digest = hashlib.sha256(data).hexdigest()[:16]
                if name == "sbom.spdx.json":
                    # linuxkit's namespace is random and its creators name linuxkit: compare
                    # the merged content
                    doc = json.loads(data)
                    doc.pop("documentNamespace", None)
                    doc.get("creationInfo", {}).pop("creators", None)
                    value = json.dumps(doc, sort_keys=True).encode()
                    digest = "sbom:" + hashlib.sha256(value).hexdigest()[:16]
                elif name.startswith("containers/") and name.endswith(".json"):
                    # Go's encoder writes struct order, ours sorted keys: compare the values
                    value = json.dumps(json.loads(data), sort_keys=True).encode()
                    digest = "json:" + hashlib.sha256(value).hexdigest()[:16]
            kind = ("file" if m.isfile() else "dir" if m.isdir() else "symlink" if m.issym()
                    else "hardlink" if m.islnk() else "dev" if m.isdev() else "other")
            link = m.linkname if (m.issym() or m.islnk()) else ""
            if kind == "dir" and name in out and out[name][0] == "dir":
                pass  # an unpacker applies the later header's mode to the existing directory
            out[name] = (kind, m.mode & 0o7777, m.uid, m.gid, link, digest)
    return out


def count_duplicates(path: Path) -> int:
    with tarfile.open(path) as tf:
        names = Counter(m.name.rstrip("/") for m in tf)
    return sum(n - 1 for n in names.values() if n > 1)


def compare(theirs: Tree, ours: Tree) -> list[str]:
    out = []
    for path in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(path), ours.get(path)
        if a == b:
            continue
        if a is None:
            out.append(f"only ours: {path} {b[0]}")
        elif b is None:
            out.append(f"only linuxkit: {path} {a[0]}")
        else:
            fields = ("kind", "mode", "uid", "gid", "link", "content")
            diffs = [f"{f} {x!r}->{y!r}" if f != "mode" else f"mode {x:o}->{y:o}"
                     for f, x, y in zip(fields, a, b, strict=True) if x != y]
            out.append(f"differs: {path}: {', '.join(diffs)}")
    return out


def save_metadata(tar: Path, spec, dest: Path, name: str, host: str) -> None:
    for f in spec.files:
        if f.metadata != "yaml":
            continue
        with tarfile.open(tar) as tf:
            found = [m for m in tf if m.name.strip("/") == f.path]
            fh = tf.extractfile(found[-1]) if found else None
            if fh is not None:
                target = dest / f"{name}.linuxkit-config"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(fh.read())
                (dest / "REGISTRY").write_text(host + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gitdir")
    parser.add_argument("linuxkit")
    parser.add_argument("--only", default="", help="spec names (file stems) to build")
    parser.add_argument("--specs", default="examples/*.yml",
                        help="glob(s) in linuxkit's tree, comma-separated")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--json", type=Path, help="write the differences here")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="a spec of ours to build too (as extra/NAME; --specs 'extra/*')")
    parser.add_argument("--save-metadata", type=Path,
                        help="keep linuxkit's metadata: yaml files here (SPEC.linuxkit-config)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lk-side-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    archive = subprocess.run(["git", f"--git-dir={args.gitdir}", "archive", "HEAD", "examples",
                              "test", "projects"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    for extra in args.extra:
        (src / "extra").mkdir(exist_ok=True)
        shutil.copy(extra, src / "extra" / extra.name)
    commit = subprocess.run(["git", f"--git-dir={args.gitdir}", "rev-parse", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    specs = sorted(p for pattern in args.specs.split(",") for p in src.glob(pattern)
                   if not p.name.startswith("side-"))
    if args.only:
        specs = [p for p in specs if p.stem in args.only.split(",")]
    loaded = {}
    for path in specs:
        try:
            loaded[path] = load_spec([path])
        except Exception as exc:  # reported per spec
            print(f"{path.name}: our loader: {str(exc).splitlines()[0]}")
    registry, host = start_registry(work / "registry")
    results: dict[str, dict] = {}
    try:
        store = Cache(work / "standins")
        names: dict[str, str] = {}
        for text, role in sorted(roles(loaded.values()).items()):
            ref = parse_ref(text)
            assert isinstance(ref, Ref)
            layers, config = stand_in(text, role=role)
            written = write_image(store, layers, config=config)
            layout = work / "layouts" / hashlib.sha256(text.encode()).hexdigest()[:16]
            if layout.exists():
                shutil.rmtree(layout)
            short = ref.repository.rsplit("/", 1)[-1]
            # an index with BuildKit's attestation manifest: an SPDX SBOM naming the image
            index = attested_index(store, written, spdx_sbom(
                short, [(short, ref.tag or "latest")], [f"usr/share/{short}/ref"]))
            export_index(store, index, [written], layout, "t")
            target = Cache(layout)
            attestation = json.loads(index.manifest)["manifests"][1]
            manifest = json.loads(store.read_blob(attestation["digest"]))
            for desc in [attestation, manifest["config"], *manifest["layers"]]:
                target.put_bytes(store.read_blob(desc["digest"], desc["size"]))
            clean_layout(layout)
            names[text] = local_name(ref, host)
            subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false",
                            f"oci:{layout}:t", f"docker://{names[text]}"], check=True)
        for path in specs:
            name = str(path.relative_to(src).with_suffix(""))
            out = work / "out" / name
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            spec = path.with_name(f"side-{path.name}")
            spec.write_text(rewrite(path.read_text(), names))
            lk = subprocess.run([args.linuxkit, "build", "--format", "tar", "--o",
                                 str(out / "linuxkit.tar"), "--cache", str(work / "lkcache"),
                                 spec.name], cwd=path.parent, env=env, capture_output=True,
                                text=True, check=False)
            ic = subprocess.run([sys.executable, "-m", "composer", "build", "-f", "tar",
                                 "--cache", str(work / "iccache"), "-o", str(out / "ic"),
                                 "--name", "ic", spec.name], cwd=path.parent,
                                env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                text=True, check=False)
            result: dict = {"linuxkit": lk.returncode, "ours": ic.returncode}
            if lk.returncode:
                result["linuxkit_error"] = " ".join((lk.stdout + lk.stderr).split())[-400:]
            if ic.returncode:
                result["our_error"] = (ic.stderr.strip().splitlines() or [""])[-1][-300:]
            if lk.returncode == 0 and ic.returncode == 0:
                theirs = read_tree(out / "linuxkit.tar")
                ours = read_tree(out / "ic" / "ic.tar")
                result["entries"] = [len(theirs), len(ours)]
                result["linuxkit_duplicates"] = count_duplicates(out / "linuxkit.tar")
                result["differences"] = compare(theirs, ours)
                if args.save_metadata:
                    save_metadata(out / "linuxkit.tar", loaded[path], args.save_metadata,
                                  name, host)
            results[name] = result
            status = ("both build" if not (lk.returncode or ic.returncode) else
                      f"linuxkit {lk.returncode}, ours {ic.returncode}")
            print(f"{name}: {status}; {len(result.get('differences', []))} differences")
            for line in result.get("differences", []):
                print(f"    {line}")
            for key in ("linuxkit_error", "our_error"):
                if key in result:
                    print(f"    {key}: {result[key]}")
    finally:
        registry.terminate()
        registry.wait()
    kinds: Counter[str] = Counter()
    for result in results.values():
        for line in result.get("differences", []):
            kinds[re.sub(r"containers/[^/ ]+/[^/ ]+/", "containers/*/*/", line)] += 1
    print(f"\nlinuxkit {commit}: {len(results)} examples, "
          f"{sum(1 for r in results.values() if 'differences' in r)} built by both, "
          f"{sum(1 for r in results.values() if r.get('differences') == [])} identical trees")
    for line, n in kinds.most_common():
        print(f"{n:4d}  {line}")
    if args.json:
        args.json.write_text(json.dumps({"commit": commit, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
