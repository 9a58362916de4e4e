"""Progress output: one line per image when not a TTY, bars on a TTY, nothing when quiet."""

from __future__ import annotations

import io

import pytest

from composer.images.cache import Cache
from composer.images.registry import RegistryClient
from composer.images.resolve import resolve_image
from composer.progress import Progress, for_stream, human
from tests.fixtures.images import sample_image
from tests.unit.test_registry_unit import FakeRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_human():
    assert [human(n) for n in (0, 999, 1000, 1_500_000, 3e9, 5e12)] == \
        ["0 B", "999 B", "1.0 kB", "1.5 MB", "3.0 GB", "5000.0 GB"]


def test_modes_follow_the_stream():
    assert for_stream(Tty(), quiet=False)._mode == "tty"
    assert for_stream(io.StringIO(), quiet=False)._mode == "lines"
    assert for_stream(Tty(), quiet=True)._mode == "quiet"


def test_lines_mode_prints_one_summary_per_image():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "lines", clock)
    for digest in ("sha256:" + "a" * 64, "sha256:" + "b" * 64):
        advance = progress.layer("img", digest, 1_000_000)
        advance(400_000)
        advance(600_000)
        progress.layer_done("img", digest)
    clock.now += 2
    assert out.getvalue() == ""
    progress.image_done("img")
    assert out.getvalue() == "pulled img: 2 layers, 2.0 MB in 2.0s (1.0 MB/s)\n"


def test_tty_mode_draws_bars_and_quiet_draws_nothing():
    out, clock = Tty(), Clock()
    progress = Progress(out, "tty", clock)
    advance = progress.layer("img", "sha256:" + "c" * 64, 1000)
    clock.now += 1
    advance(500)
    assert "img cccccccccccc [##########..........] 500 B/1.0 kB 500 B/s" in out.getvalue()
    progress.layer_done("img", "sha256:" + "c" * 64)
    progress.image_done("img")
    assert out.getvalue().endswith("pulled img: 1 layer, 500 B in 1.0s (500 B/s)\n")
    assert "\x1b[1F\x1b[J" in out.getvalue()
    quiet = Progress(None, "quiet")
    quiet.layer("img", "sha256:" + "c" * 64, 10)(10)
    quiet.image_done("img")


@pytest.fixture
def fake():
    registry = FakeRegistry()
    yield registry
    registry.close()


def test_resolution_reports_through_progress(fake, tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    fake.add_image("app", "1", store, written)
    out = io.StringIO()
    logs: list[str] = []
    image = resolve_image(f"{fake.host}/app:1", cache=Cache(tmp_path / "cache"), arch="amd64",
                          client=RegistryClient(), log=logs.append,
                          progress=Progress(out, "lines"))
    total = sum(layer.size for layer in image.layers)
    assert out.getvalue().startswith(f"pulled {fake.host}/app:1: 2 layers, {human(total)} in ")
    assert out.getvalue().count("\n") == 1
    assert logs == []
