"""The remote build cache: phase-one and phase-two results kept in an OCI registry, shared by
many builders (``build --cache-to REF --cache-from REF``, ``cache remote ls|rm|prune``).

An entry is an OCI artifact in the repository REF, tagged by its cache key
(``rootfs-<key>``, ``outputs-<key>``): an image manifest with an ``artifactType``, the empty
config, a DSSE envelope (signed by the writer's ``--cache-key``) and the files as layers with
title annotations (:mod:`.entry`). The envelope's payload names the key and every file by
digest and size; a reader trusts the payload only, never the manifest, and only when a
``--cache-trust`` key signed it, then streams each file through the one verifying reader.

- :mod:`.entry`: the artifact format (payload, manifest, checks); no network.
- :mod:`.transport`: one repository over :class:`composer.images.registry.RegistryClient` and
  :class:`composer.images.push.Pusher` (get, publish, list, delete).
- :mod:`.use`: what ``build`` calls: look up before working, publish after, and the
  provenance the build writes into ``NAME.build-env.json``.
- :mod:`.housekeeping`: ``cache remote ls``, ``rm`` and ``prune``.

The local caches stay first (:mod:`composer.rootfs.memo`, :mod:`composer.cache.outputs`); a
remote hit is installed into them, so it is verified once and then reused like any local entry.
This package never sees a format (the build passes keys and file lists) and never fails a build
because a registry is down (unless ``--cache-from-required``).
"""
