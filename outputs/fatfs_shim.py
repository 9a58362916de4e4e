"""pyfatfs's ``PyFatFS``, imported without setuptools' ``pkg_resources``.

``PyFatFS`` is built on PyFilesystem2 (``fs``), whose ``__init__`` modules call
``pkg_resources.declare_namespace`` and whose opener registry imports ``pkg_resources`` for
plugin entry points. Current setuptools (81 and later) no longer ships ``pkg_resources``, a new
Python 3.12+ venv has no setuptools at all, and older ones print a deprecation warning when it is
imported. Nothing here uses either feature (no ``fs`` plugins, no ``open_fs`` URLs), so while
``fs`` is imported a stand-in with those two names takes ``pkg_resources``' place, and is removed
again at once: the process is left as it was, whatever setuptools the venv has.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator


def _stand_in() -> types.ModuleType:
    module = types.ModuleType("pkg_resources", "image-composer's stand-in while `fs` imports")

    def declare_namespace(name: str) -> None:
        """A no-op: ``fs`` is one ordinary package here, with no plugins to merge."""

    def iter_entry_points(group: str, name: str | None = None) -> Iterator[object]:
        """No ``fs.opener`` plugins: ``fs.open_fs`` is never used."""
        return iter(())

    module.declare_namespace = declare_namespace  # type: ignore[attr-defined]
    module.iter_entry_points = iter_entry_points  # type: ignore[attr-defined]
    return module


def _import_pyfatfs_fs() -> type:
    if "fs" in sys.modules or "pkg_resources" in sys.modules:
        from pyfatfs.PyFatFS import PyFatFS as loaded  # already importable as it is
        return loaded
    stand_in = _stand_in()
    sys.modules["pkg_resources"] = stand_in
    try:
        from pyfatfs.PyFatFS import PyFatFS as loaded
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]
    return loaded


PyFatFS = _import_pyfatfs_fs()
