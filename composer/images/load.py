"""``--load``: hand a ``docker`` output archive to the local Docker engine (the ``docker`` SDK).

The archive is streamed to the engine as it is (``docker load``); the engine finds the
daemon the usual way (``DOCKER_HOST`` and friends, through ``docker.from_env``).
"""

from __future__ import annotations

from pathlib import Path

from composer.errors import ComposerError


def load_archive(archive: Path, client=None) -> list[str]:
    """Load ``archive`` into Docker; returns the tags (or ids) of the images it loaded."""
    import docker
    import docker.errors

    try:
        engine = client or docker.from_env()
    except docker.errors.DockerException as exc:
        raise ComposerError(f"--load: cannot reach the Docker engine: {exc}") from None
    try:
        with open(archive, "rb") as fh:
            images = engine.images.load(fh)
    except FileNotFoundError:
        raise ComposerError(f"{archive}: no such file") from None
    except docker.errors.DockerException as exc:
        raise ComposerError(f"{archive}: docker load failed: {exc}") from None
    finally:
        if client is None:
            engine.close()
    return sorted(tag for image in images for tag in (image.tags or [image.id]))
