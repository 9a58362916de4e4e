"""An onshutdown bundle directory named like an onboot one (``000-x`` in both sections).

linuxkit's runner never deletes its onboot containers and uses the directory name as the runc
container id, so runc refuses to create the onshutdown one ("container with given ID already
exists") and it silently never runs. A warning, not an error: image-composer's example runtime
(examples/packages/runc) deletes each one-shot container and copes.
"""

from __future__ import annotations

from composer.errors import Position
from composer.spec.model import Container


def onshutdown_collisions(onboot: tuple[Container, ...], onshutdown: tuple[Container, ...]
                          ) -> list[tuple[Position | None, str]]:
    """Warnings for onshutdown entries whose bundle directory an onboot entry also has."""
    boot = {f"{n:03d}-{c.name}": n for n, c in enumerate(onboot)}
    out = []
    for n, container in enumerate(onshutdown):
        name = f"{n:03d}-{container.name}"
        if name in boot:
            out.append((container.pos, f"onshutdown[{n}] {container.name}: its container id "
                        f"{name} is also onboot[{boot[name]}]'s; linuxkit's init never deletes "
                        "onboot containers, so runc would refuse to create this one there "
                        "(\"container with given ID already exists\"); rename one of them"))
    return out
