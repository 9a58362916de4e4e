"""Images: every source ends as an :class:`~composer.images.model.Image` whose blobs are in the
cache, verified.

Sources (``resolve.resolve_image`` picks one by the reference's form): a registry (``registry``:
THE registry HTTP client, with ``auth`` for ``~/.docker/config.json`` and credential helpers),
an OCI layout (``layout``, ``oci:PATH[:TAG]``), an OCI or docker archive and the Docker engine
(``sources``), and the cache itself (what ``pkg build`` wrote). Sinks: the cache (``write``), a
registry (``push``), the Docker engine (``load``). ``lock`` pins a spec's references to digests
(``SPEC.lock``) and resolves a spec through it.

``cache.Cache`` is the OCI image layout everything is kept in; every byte read back goes
through THE digest-verifying reader (:class:`composer.streams.digest.VerifyingReader`), so a
blob is trusted only as far as its hash, whichever source it came from.
"""
