"""Tars: THE canonical tar writer and the readers of any tar we are given.

- ``canon``: the entry model (:class:`~composer.tar.canon.Entry`) and the writer of the
  canonical rootfs tar (``docs/canonical-tar.md``);
- ``headers``: fast header parsing with ``pread`` (no ``TarInfo``), which gives up to
  :mod:`tarfile` on anything unusual;
- ``read``: :func:`~composer.tar.read.read_entries`, the streaming reader both phases use
  (``headers`` first, :mod:`tarfile` as the last word), and tarfile's failures as clean errors;
- ``check``: ``check-tar`` (is it canonical?) and ``explain`` (where did a path come from?).

A leaf: it imports nothing of the pipeline, so phase one and phase two share it.
"""
