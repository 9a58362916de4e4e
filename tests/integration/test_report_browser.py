"""``image-composer report`` pages in a real browser: Debian's headless Chromium, network off.

The page is loaded from a file with every network path closed (no proxy reachable, no name
resolves, background services off; the page's own Content-Security-Policy allows nothing but
inline code). The rendered DOM (``--dump-dom``) must show the section names (drawn by the
treemap script, not only in the server-rendered tables), the largest file and every input
digest, and Chromium's log must hold no console message at all (the page logs nothing itself;
an error or a blocked load would). Screenshots go to ``test-artifacts/`` for CI to keep.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from composer.report import data, render
from tests.integration.conftest import EXAMPLES, require_tool

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--enable-logging=stderr", "--v=0",
         "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--window-size=1400,1000"]


def composer(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    proc = subprocess.run([sys.executable, "-m", "composer", *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc.stdout


def browse(page: Path, profile: Path, shot: Path | None = None, fragment: str = "") -> str:
    """The DOM after the page's scripts ran; fails on any console message."""
    chromium = require_tool("chromium")
    base = [chromium, *FLAGS, f"--user-data-dir={profile}"]
    url = page.as_uri() + fragment
    proc = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                          errors="replace", stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    dom = proc.stdout
    assert 'id="js-error"' not in dom and "data-error=" not in dom
    rendered = re.search(r'id="treemap"[^>]*data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) > 0, "the treemap script drew nothing"
    if shot is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True,
                       stdin=subprocess.DEVNULL, check=True)
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return dom


def drawn_labels(dom: str) -> set[str]:
    """The names on the treemap's boxes (each label is "NAME SIZE")."""
    return {m.rsplit(" ", 2)[0] for m in re.findall(r'class="tm-label">([^<]*)<', dom)}


class _Boxes(HTMLParser):
    """The treemap's top-level boxes: (label, width, height) of #treemap's direct children."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # div depth inside #treemap (0: outside)
        self.boxes: list[list] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("id") == "treemap":
            self.depth = 1
        elif tag == "div" and self.depth:
            if self.depth == 1 and "tm-box" in (a.get("class") or ""):
                style = {k.strip(): v.strip() for k, _, v in
                         (part.partition(":") for part in a["style"].split(";"))}
                self.boxes.append(["", float(style["width"].removesuffix("px")),
                                   float(style["height"].removesuffix("px"))])
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.depth:
            self.depth -= 1

    def handle_data(self, text: str) -> None:
        if self.depth == 2 and self.boxes and not self.boxes[-1][0]:
            self.boxes[-1][0] = text.rsplit(" ", 2)[0]


def top_boxes(dom: str) -> dict[str, float]:
    """Area in square pixels of each top-level box, by label."""
    parser = _Boxes()
    parser.feed(dom)
    return {label: (w + 1) * (h + 1) for label, w, h in parser.boxes if label}


@pytest.fixture(scope="module")
def example(example_packages, tmp_path_factory) -> dict[str, Path]:
    """examples/hello.yml built twice: as it is, and with its one ``files:`` entry changed."""
    cache = example_packages["kernel"][0].root
    tmp = tmp_path_factory.mktemp("report-example")
    composer("build", "-f", "kernel+initrd,tar", "-o", str(tmp / "a"), "--cache", str(cache),
             str(EXAMPLES / "hello.yml"))
    changed = tmp / "b-spec" / "hello.yml"
    changed.parent.mkdir()
    text = (EXAMPLES / "hello.yml").read_text()
    text = text.replace("@pkg:./packages/", f"@pkg:{EXAMPLES / 'packages'}/")
    assert "built by image-composer" in text
    changed.write_text(text.replace("built by image-composer", "rebuilt by image-composer"))
    composer("build", "-f", "kernel+initrd,tar", "-o", str(tmp / "b"), "--cache", str(cache),
             str(changed))
    return {"a": tmp / "a" / "hello.build.json", "b": tmp / "b" / "hello.build.json",
            "cache": cache, "tmp": tmp}


def test_example_report_in_chromium(example):
    page = example["tmp"] / "hello.report.html"
    composer("report", str(example["a"]), "--cache", str(example["cache"]), "-o", str(page))
    dom = browse(page, example["tmp"] / "profile", ARTIFACTS / "report-example.png")
    labels = drawn_labels(dom)
    for section in ("kernel", "init", "onboot/hello"):
        assert section in labels, sorted(labels)[:40]
    assert "<b>files</b>" in dom  # 48 bytes: in the table, too small for a box of its own
    build = render.read_build(example["a"], cache=example["cache"])
    # the boxes' areas are in proportion to the sections' bytes
    areas = top_boxes(dom)
    sizes = {t.section: t.bytes for t in data.section_totals(build.items)}
    assert {"kernel", "init", "onboot/hello"} <= set(areas), areas
    for section in ("init", "onboot/hello"):
        want = sizes["kernel"] / sizes[section]
        assert abs(areas["kernel"] / areas[section] / want - 1) < 0.03, (areas, sizes)
    top = data.largest(build.items, 1)[0]
    assert top.path == "boot/kernel" and f'<td class="path">{top.path}</td>' in dom
    for image in build.record["images"]:
        assert image["digest"] in dom
    (ARTIFACTS / "report-example.html").write_bytes(page.read_bytes())


def test_diff_report_shows_exactly_the_changed_file(example):
    page = example["tmp"] / "diff.report.html"
    composer("report", str(example["a"]), str(example["b"]), "--cache", str(example["cache"]),
             "-o", str(page))
    dom = browse(page, example["tmp"] / "profile-diff", ARTIFACTS / "report-diff.png")
    rows = re.findall(r'<tr class="(added|removed|changed)"><td>[a-z]+</td>'
                      r'<td class="path">([^<]*)</td><td>([^<]*)</td>', dom)
    assert rows == [("changed", "etc/image-composer/example", "content")]
    assert re.search(r"<td[^>]*>spec hello\.yml</td>", dom)  # the one changed input
    # the treemap of only what changed: that one file, in its section, marked
    dom = browse(page, example["tmp"] / "profile-diff", ARTIFACTS / "report-diff-changes.png",
                 "#only-changes")
    assert {"files", "example"} <= drawn_labels(dom)
    assert drawn_labels(dom) <= {"files", "linuxkit.files", "example",
                                 "etc/image-composer"}, drawn_labels(dom)
    assert 'aria-pressed="true"' in dom and "tm-changed" in dom


def test_the_browser_check_sees_script_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><div id="treemap" data-rendered="1"></div>'
                    "<script>console.log('hello'); noSuchFunction();</script></body></html>")
    with pytest.raises(AssertionError, match="noSuchFunction"):
        browse(page, tmp_path / "profile")


def test_50k_entry_report_in_chromium(tmp_path):
    from bench.workload import Workload, generate

    layout = generate(Workload("report", 8 << 20, 50_000, 4), ROOT / "bench" / "work" /
                      "report-50k")
    spec = tmp_path / "big.yml"
    spec.write_text(f"init:\n  - oci:{layout}:bench\n")
    cache = tmp_path / "cache"
    composer("build", "-f", "tar", "-o", str(tmp_path / "out"), "--cache", str(cache), str(spec))
    record = tmp_path / "out" / "big.build.json"
    page = tmp_path / "big.report.html"
    composer("report", str(record), "--cache", str(cache), "-o", str(page))
    build = render.read_build(record, cache=cache)
    assert len(build.items) > 50_000
    dom = browse(page, tmp_path / "profile", ARTIFACTS / "report-50k.png")
    assert "init" in drawn_labels(dom)
    assert any(label.startswith("layer 3 \u00b7 ") for label in drawn_labels(dom))
    top = data.largest(build.items, 1)[0]
    assert f'<td class="path">{top.path}</td>' in dom
    for image in build.record["images"]:
        assert image["digest"] in dom
    boxes = int(re.search(r'data-rendered="(\d+)"', dom).group(1))
    assert boxes <= 2500  # drawn lazily: a bounded number of boxes, not one per file
