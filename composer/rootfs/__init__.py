"""Phase one: a spec and its images in, the canonical rootfs tar out.

The stages, in order:

1. ``tree``: paths -> nodes, with the overlay rules (whiteouts, opaque directories, hard links);
2. ``flatten``: each image's layers, verified and uncompressed in the cache, applied to a tree;
3. ``bundle``: ``config.json`` and ``runtime.json`` for every onboot, onshutdown and service
   container (linuxkit's ``config.go`` semantics);
4. ``assemble``: kernel, init, containers and ``files:`` into one tree, written by THE canonical
   tar writer (:mod:`composer.tar.canon`).

``memo`` keeps the result in the cache, keyed by everything that shapes it; ``packages`` finds
the package databases in it for the SBOM. File contents are never held in memory and never
extracted onto the host: the tree keeps offsets into the cached layer files.
"""
