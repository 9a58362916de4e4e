"""Output files appear whole or not at all.

Each output is written to a hidden temporary file in the destination directory and renamed into
place only when the whole build succeeded, so a failed or interrupted build leaves nothing behind.
Output files get mode 0644 whatever the umask is. A directory output (``create_dir``) is built the
same way, a hidden temporary directory renamed into place on commit, its files 0644 and its
directories 0755; an older directory of the same name is moved aside first and then removed.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Self


@contextlib.contextmanager
def atomic_file(dest: Path, tmp_dir: Path | None = None, *, durable: bool = True
                ) -> Iterator[BinaryIO]:
    """Write ``dest`` whole or not at all: a temporary file (in ``tmp_dir``, default beside
    ``dest``) is fsync'd, made 0644 whatever the umask, and renamed over ``dest``; on any
    error or interruption it is removed instead. The one way single files are written
    atomically (cache blobs, cache index, lock files, exported archives).

    ``durable=False`` skips the fsync: the file is still whole or absent for every process
    (a killed one included), but a power loss may leave it renamed and empty; only for files
    the reader trusts no longer than the boot that wrote them (the cache's layer copies)."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


TEMP_MARK = ".image-composer-"  # + "<pid>." + ...: every temporary we leave in an output dir


def _temp_prefix(label: str) -> str:
    return f"{TEMP_MARK}{os.getpid()}.{label}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(directory: Path) -> None:
    """Remove temporaries that a killed build (``kill -9``, power loss) left in ``directory``:
    ours by name, and only those whose process is gone, so concurrent builds are untouched."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(directory):
            if not entry.name.startswith(TEMP_MARK):
                continue
            pid = entry.name[len(TEMP_MARK):].split(".", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


class OutputSet:
    """Collects the temporary files of one build; ``commit`` renames them all into place.

    Temporaries are named ``.image-composer-<pid>.*`` so the next build into the same
    directory can remove what a killed one left (:func:`sweep`).
    """

    def __init__(self, directory: Path, known: dict[Path, tuple[str, int]] | None = None):
        self.directory = Path(directory)
        self._pending: list[tuple[str, Path]] = []
        self._known = dict(known or {})  # source file -> (sha256, size) the caller vouches for
        self.digests: dict[Path, tuple[str, int]] = {}  # temporary -> known (sha256, size)
        sweep(self.directory)

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[Path]:
        """A temporary work directory beside the outputs (same filesystem), always removed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory,
                                         prefix=_temp_prefix(label)) as tmp:
            yield Path(tmp)

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        """A file to fill that becomes ``name`` on commit. Two formats may both write a file
        (``NAME-kernel``) only with the same bytes: the second copy is compared and dropped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        earlier = next((t for n, t in self._pending if n == name and not t.is_dir()), None)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_temp_prefix(name),
                                   suffix=".partial")
        if earlier is None:
            self._pending.append((name, Path(tmp)))
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if earlier is not None and not filecmp.cmp(earlier, tmp, shallow=False):
                from composer.errors import ComposerError

                raise ComposerError(f"{name}: two formats of this build write it with "
                                    "different bytes")
        finally:
            if earlier is not None:
                os.unlink(tmp)

    def known_digest(self, source: Path) -> tuple[str, int] | None:
        """(sha256, size) of ``source`` if the caller vouched for it (the rootfs tar)."""
        return self._known.get(Path(source))

    def created(self) -> int:
        """How many outputs are pending: :meth:`since` gives those created after this count."""
        return len(self._pending)

    def since(self, count: int) -> list[tuple[str, Path]]:
        """(final name, temporary path) of the outputs created after :meth:`created` said
        ``count``."""
        return list(self._pending[count:])

    def place(self, name: str, source: Path, digest: tuple[str, int] | None = None) -> None:
        """An output byte for byte equal to ``source``, a finished file that is not rewritten
        in place (a cache entry): a reflink or, failing that, a hard link when the filesystem
        allows, else an in-kernel copy. A large tar output thus costs no read, write or hash of
        its bytes (the digest of a ``known`` source, or the ``digest`` given, is carried over)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        earlier = next((t for n, t in self._pending if n == name and not t.is_dir()), None)
        if earlier is not None:  # a file two formats share: the same bytes, or an error
            same = (digest is not None and self.digests.get(earlier) == digest) or \
                filecmp.cmp(earlier, source, shallow=False)
            if not same:
                from composer.errors import ComposerError

                raise ComposerError(f"{name}: two formats of this build write it with "
                                    "different bytes")
            return
        fd, name_tmp = tempfile.mkstemp(dir=self.directory, prefix=_temp_prefix(name),
                                        suffix=".partial")
        tmp = Path(name_tmp)
        self._pending.append((name, tmp))
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            cloned = _clone(src, out)
        if not cloned:
            os.unlink(tmp)
            try:
                os.link(source, tmp)
            except OSError:
                with open(tmp, "wb") as out, open(source, "rb") as src:
                    copy_file(src, out)
                    out.flush()
                    os.fsync(out.fileno())
        if digest is not None:
            self.digests[tmp] = digest
        elif Path(source) in self._known:
            self.digests[tmp] = self._known[Path(source)]

    @contextlib.contextmanager
    def create_dir(self, name: str) -> Iterator[Path]:
        """A temporary directory to fill; it becomes ``name`` on commit."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.directory, prefix=_temp_prefix(name),
                                    suffix=".partial"))
        self._pending.append((name, tmp))
        yield tmp

    def commit(self) -> list[Path]:
        done = []
        for name, tmp in self._pending:
            dest = self.directory / name
            if tmp.is_dir():
                _replace_dir(tmp, dest)
            else:
                if os.stat(tmp).st_mode & 0o7777 != 0o644:  # chmod would change a link's ctime
                    os.chmod(tmp, 0o644)
                os.replace(tmp, dest)
                # rename(2) does nothing when both names are links to one file (a re-placed
                # cache entry): the temporary name is then still there.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            done.append(dest)
        self._pending.clear()
        return done

    def abort(self) -> None:
        for _, tmp in self._pending:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._pending.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class Held:
    """Several :class:`OutputSet` committed together: a build over several architectures
    (``--arch amd64,arm64``) leaves every architecture's files or none, as one build does.
    ``hold`` keeps a set's temporaries pending; ``commit`` renames them all into place and
    then runs what waited for them (``after``); ``abort`` removes them."""

    def __init__(self) -> None:
        self._sets: list[OutputSet] = []
        self._after: list[Callable[[], None]] = []

    def hold(self, outs: OutputSet) -> list[Path]:
        """Keep ``outs`` for :meth:`commit`; the paths its files will have."""
        self._sets.append(outs)
        return [outs.directory / name for name, _ in outs.since(0)]

    def after(self, action: Callable[[], None]) -> None:
        self._after.append(action)

    def commit(self) -> list[list[Path]]:
        done = [outs.commit() for outs in self._sets]
        self._sets.clear()
        for action in self._after:
            action()
        self._after.clear()
        return done

    def abort(self) -> None:
        for outs in self._sets:
            outs.abort()
        self._sets.clear()
        self._after.clear()


FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def _clone(src: BinaryIO, out: BinaryIO) -> bool:
    """Reflink ``src`` into the empty ``out`` (btrfs, xfs, bcachefs); False where unsupported."""
    import fcntl

    try:
        fcntl.ioctl(out.fileno(), FICLONE, src.fileno())
    except OSError:
        return False
    return True


def copy_file(src: BinaryIO, out: BinaryIO) -> None:
    """Copy an open file into another, from their current positions to the end: in the
    kernel (``copy_file_range``) where the filesystems allow, else through a 1 MiB buffer."""
    out.flush()
    try:
        while os.copy_file_range(src.fileno(), out.fileno(), 1 << 30):
            pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP,
                             errno.EBADF):
            raise
        shutil.copyfileobj(src, out, 1 << 20)


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Fix modes, fsync the files, then swap ``tmp`` in for ``dest`` (whatever ``dest`` was)."""
    for root, dirs, files in os.walk(tmp):
        os.chmod(root, 0o755)
        for sub in dirs:
            os.chmod(os.path.join(root, sub), 0o755)
        for file in files:
            path = os.path.join(root, file)
            os.chmod(path, 0o644)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    old = None
    if dest.is_dir() and not dest.is_symlink():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=_temp_prefix(dest.name),
                                    suffix=".old"))
        os.replace(dest, old / dest.name)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
