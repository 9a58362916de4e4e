"""What a fresh venv on any supported Python (3.11 to 3.13) is like: no ``pkg_resources`` (current
setuptools dropped it; 3.12+ venvs have no setuptools at all), warnings and unraisable
exceptions shown (``-X dev``, as 3.13 shows the latter by default)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NO_PKG_RESOURCES = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pkg_resources" or name.startswith("pkg_resources."):
            raise ModuleNotFoundError("No module named 'pkg_resources'", name=name)
sys.meta_path.insert(0, Refuse())
"""


def run_fresh(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "fresh.py"
    script.write_text(NO_PKG_RESOURCES + textwrap.dedent(code))
    return subprocess.run([sys.executable, "-X", "dev", "-W", "error", str(script)], cwd=ROOT,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)},
                          check=False)


def test_an_esp_is_written_without_pkg_resources(tmp_path):
    proc = run_fresh(f"""
        import sys
        from outputs.fat import write_esp
        write_esp({str(tmp_path / "esp.img")!r}, {{"EFI/BOOT/BOOTX64.EFI": b"x" * 3000}},
                  serial=0x1234, mtime=1492533000)
        assert "pkg_resources" not in sys.modules, "the stand-in must not stay behind"
        try:
            import pkg_resources
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError("pkg_resources should not be importable here")
        print("ok")
    """, tmp_path)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "ok", "")
    assert (tmp_path / "esp.img").stat().st_size > 0


def test_the_refusal_is_real(tmp_path):
    """The premise: without the shim, importing pyfatfs' file system class fails here."""
    proc = run_fresh("import pyfatfs.PyFatFS\n", tmp_path)
    assert proc.returncode == 1
    assert "No module named 'pkg_resources'" in proc.stderr


def test_same_esp_bytes_with_and_without_pkg_resources_on_the_path(tmp_path):
    """The stand-in changes nothing pyfatfs writes."""
    code = """
        from outputs.fat import write_esp
        write_esp({path!r}, {{"EFI/BOOT/BOOTX64.EFI": b"y" * 5000, "a/b/c.txt": b"z"}},
                  serial=0xBEEF, mtime=1492533000)
    """
    proc = run_fresh(code.format(path=str(tmp_path / "fresh.img")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    from outputs.fat import write_esp

    write_esp(tmp_path / "here.img", {"EFI/BOOT/BOOTX64.EFI": b"y" * 5000, "a/b/c.txt": b"z"},
              serial=0xBEEF, mtime=1492533000)
    assert (tmp_path / "fresh.img").read_bytes() == (tmp_path / "here.img").read_bytes()


def test_a_hashing_writer_outliving_its_file_is_silent(tmp_path):
    """3.13 reports the flush a collected wrapper makes of an already closed file."""
    proc = run_fresh(f"""
        import gc
        from composer.streams.digest import HashingWriter
        f = open({str(tmp_path / "blob")!r}, "wb")
        w = HashingWriter(f)
        w.write(b"data")
        f.close()
        del w
        gc.collect()
        with open({str(tmp_path / "blob2")!r}, "wb") as g:
            w = HashingWriter(g)
            w.write(b"more")
            w.close()
        print("ok")
    """, tmp_path)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "ok", "")
