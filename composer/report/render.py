"""Make the report page: read a build (or two), reduce it to :mod:`composer.report.data`, and
render ``templates/report.html.j2`` with Jinja2 into one self-contained HTML file.

Everything the page needs is inlined (CSS, the treemap script, its data as compact JSON), and
its Content-Security-Policy forbids loading anything else, so it opens offline and can be
attached to a CI run. The page depends only on the builds it describes: no clock, host or path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from composer import canonjson
from composer.images.cache import Cache
from composer.report import data, scan

ROW_LIMIT = 300  # changed paths shown per section and source (all are in the counts)
SHARED_LIMIT = 40


@dataclass(frozen=True)
class Build:
    """One build as the report sees it."""

    path: Path
    record: dict[str, Any]
    items: list[data.Item]
    layers: scan.LayerMap


def read_build(record_path: Path, *, tar: Path | None = None, cache: Path | None = None
               ) -> Build:
    record = scan.load(record_path)
    rootfs = scan.find_rootfs(Path(record_path), record, tar, cache)
    layers = scan.layer_map(Cache(cache) if cache is not None and cache.is_dir() else None,
                            record)
    items = scan.read_items(rootfs, layers, scan.kernel_names(record))
    return Build(Path(record_path), record, items, layers)


def context(b: Build, a: Build | None = None, keys: Path | None = None) -> dict[str, Any]:
    """The template's variables (plain values; see the template for how they are shown)."""
    record = b.record
    diff = data.diff_items(a.items, b.items) if a is not None else None
    tree = data.treemap_data(b.items, diff.marks() if diff else None)
    sections = data.section_totals(b.items)
    shared = data.shared_content(b.items)
    checks = scan.reproducibility(b.path, record, keys)
    spdx = scan.sbom(b.path, record)
    repro = reproducibility_word(checks)
    out: dict[str, Any] = {
        "name": record["build"]["name"], "record": record,
        "totals": {"bytes": sum(s.bytes for s in sections),
                   "files": sum(s.files for s in sections),
                   "entries": sum(s.entries for s in sections)},
        "sections": sections, "section_order": tree["sections"],
        "largest": data.largest(b.items), "shared": shared,
        "shared_total": sum(s.reclaimable for s in shared), "shared_limit": SHARED_LIMIT,
        "packages": data.packages_by_source(spdx, data.database_sections(b.items)),
        "has_sbom": spdx is not None,
        "inputs": data.inputs(record), "tools": data.tools(record),
        "layer_digests": sorted(b.layers.digests.items()),
        "checks": checks, "repro_word": repro[0], "repro_class": repro[1],
        "merged": scan.merged_spec(record), "treemap": tree,
        "diff": diff, "row_limit": ROW_LIMIT,
    }
    if a is not None:
        out.update({"a_name": a.record["build"]["name"], "a_record": a.record,
                    "changed_inputs": data.changed_inputs(a.record, record),
                    "output_pairs": data.outputs_side_by_side(a.record, record)})
    return out


def reproducibility_word(checks: list[scan.Check]) -> tuple[str, str]:
    """One word for the page's card, and its colour class: anything that differs wins, then a
    saved rebuild, then attestations (checked against keys, or only found), then the sums."""
    by_kind = {c.what.rsplit(".", 2)[-2] if c.what.endswith(".json") else "": c.status
               for c in checks if c.what.endswith((".intoto.json", ".verify.json"))}
    if any(c.status == "differs" for c in checks):
        return "differs", "bad"
    if by_kind.get("verify") == "ok":
        return "verified", "ok"
    if by_kind.get("intoto") == "ok":
        return "attested", "ok"
    if by_kind.get("intoto") == "info":
        return "signed (unchecked)", "info"
    if any(c.status == "ok" for c in checks):
        return "sums match", "info"
    return "not checked", ""


# -- rendering -------------------------------------------------------------------------------
def human_bytes(n: int) -> str:
    """Binary units, fixed precision: the same number always prints the same."""
    value, unit = float(n), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{n} B" if unit == "B" else f"{value:.2f} {unit}" if value < 10 else \
        f"{value:.1f} {unit}"


def short_source(source: str) -> str:
    """An image ref without its registry's default host, digest and most of a long tag."""
    name = source.split("@", 1)[0].removeprefix("docker.io/")
    repo, colon, tag = name.rpartition(":")
    if colon and "/" not in tag and len(tag) > 16:
        return f"{repo}:{tag[:12]}\u2026"
    return name


def item_from(item: data.Item) -> str:
    """Where a file came from, for a table cell: ``IMAGE · layer N``."""
    if item.source in data.NOT_IMAGES:
        return item.source
    layer = item.layer
    word = "generated" if layer is None else "layer ?" if layer < 0 else f"layer {layer}"
    return f"{short_source(item.source)} \u00b7 {word}"


def section_colour(order: list[str]):
    """The colour the treemap script gives a section (the same formula as treemap.js)."""
    def colour(section: str) -> str:
        if section not in order:
            return "#c7ced6"
        hue = (order.index(section) * 137.508 + 200) % 360
        return f"hsl({hue:.0f},55%,42%)"
    return colour


def _json_for_script(value: Any) -> str:
    """Compact JSON that cannot end its ``<script>`` element early."""
    text = canonjson.compact(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(ctx: dict[str, Any]) -> str:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.PackageLoader("composer.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["bytes"] = human_bytes
    env.filters["signed_bytes"] = lambda n: ("+" if n > 0 else "\u2212" if n < 0 else "") \
        + human_bytes(abs(n))
    env.filters["section_colour"] = section_colour(ctx["section_order"])
    env.filters["short_source"] = short_source
    env.filters["item_from"] = item_from
    static = resources.files("composer.report") / "static"
    page = {**ctx, "css": Markup(static.joinpath("report.css").read_text("utf-8")),
            "js": Markup(static.joinpath("treemap.js").read_text("utf-8")),
            "treemap_json": Markup(_json_for_script(ctx["treemap"]))}
    page.setdefault("a_name", None)
    return env.get_template("report.html.j2").render(page)


def write_report(out: Path, html: str) -> None:
    from composer.atomic import atomic_file

    with atomic_file(Path(out)) as fh:
        fh.write(html.encode("utf-8"))
