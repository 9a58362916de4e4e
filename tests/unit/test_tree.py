"""Tree.resolve_parent: the fast path for clean paths agrees with the component walk."""

from __future__ import annotations

import contextlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from composer.rootfs.tree import Node, Tree, TreeError
from composer.tar.canon import Entry, Kind

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ)

NAMES = st.sampled_from(["a", "b", "c", ".", "..", ""])
PATHS = st.lists(NAMES, min_size=1, max_size=5).map("/".join)
LINK_TARGETS = st.one_of(PATHS, PATHS.map(lambda p: "/" + p))


@settings(parent=FUZZ)
@given(dirs=st.lists(PATHS, max_size=6),
       links=st.lists(st.tuples(PATHS, LINK_TARGETS), max_size=4),
       probes=st.lists(PATHS, min_size=1, max_size=8))
def test_fast_path_agrees_with_the_walk(dirs, links, probes):
    tree = Tree(0)
    for path in dirs:
        with contextlib.suppress(TreeError):
            tree.put(path, Node(Entry("", Kind.DIR, 0o755)))
    for path, target in links:
        with contextlib.suppress(TreeError):  # a loop among earlier links
            tree.put(path, Node(Entry("", Kind.SYMLINK, 0o777, linkname=target)))
    for probe in probes:
        try:
            want = tree._resolve_walk(probe)
        except Exception as exc:
            want = type(exc)
        try:
            got = tree.resolve_parent(probe)
        except Exception as exc:
            got = type(exc)
        assert got == want, probe


def test_clean_paths_under_real_directories_take_the_fast_path(monkeypatch):
    tree = Tree(0)
    tree.put("usr/share/doc", Node(Entry("", Kind.DIR, 0o755)))
    monkeypatch.setattr(tree, "_resolve_walk", lambda path: (_ for _ in ()).throw(AssertionError))
    assert tree.resolve_parent("usr/share/doc/x") == "usr/share/doc/x"
    assert tree.resolve_parent("new/dir/y") == "new/dir/y"


def test_symlinked_parent_is_followed():
    tree = Tree(0)
    tree.put("usr/lib", Node(Entry("", Kind.DIR, 0o755)))
    tree.put("lib", Node(Entry("", Kind.SYMLINK, 0o777, linkname="usr/lib")))
    assert tree.resolve_parent("lib/x.so") == "usr/lib/x.so"
    assert tree.resolve_parent("lib/../etc/x") == "usr/etc/x"  # ".." of the target, as the kernel


@settings(max_examples=60, deadline=None, derandomize=True)
@given(reads=st.lists(st.tuples(st.integers(0, 700_000), st.integers(0, 300_000)),
                      max_size=40),
       sequential=st.booleans())
def test_read_ahead_reads_what_pread_reads(tmp_path_factory, reads, sequential):
    """Small contents read through one buffer are exactly the file's bytes at those offsets,
    whatever the order (forward runs grow the buffer; jumps, overlaps and the end of the file
    do not fool it)."""
    from composer.rootfs.tree import ReadAhead

    path = tmp_path_factory.mktemp("ahead") / "layer"
    data = os.urandom(600_000)
    path.write_bytes(data)
    if sequential:  # one forward run of adjacent small pieces, as a sorted layer gives
        pieces, at = [], 0
        for _offset, size in reads:
            pieces.append((at, size % 4000))
            at += size % 4000
        reads = pieces
    with open(path, "rb") as fh:
        ahead = ReadAhead(fh.fileno())
        for offset, size in reads:
            assert ahead.read(offset, size) == data[offset:offset + size]
