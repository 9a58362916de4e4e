"""Releases in an OCI registry: one artifact per build, with referrers that anyone can add to.

A release is an OCI 1.1 artifact (:mod:`.artifact`): an image manifest with ``artifactType``
:data:`composer.oci.media.RELEASE_ARTIFACT`, the empty config, and one layer per output of the
build (its media type and its ``org.opencontainers.image.title``). The build record, the SBOM,
``SHA256SUMS`` (with its signature) and every attestation are *referrers*: manifests whose
``subject`` is the release (:mod:`.referrers`: the referrers API where the registry has it, the
``sha256-<hex>`` tag schema otherwise).

- :mod:`.publish`: ``push --release``: upload a build and attach its record, SBOM and sums;
- :mod:`.fetch`: pull a release back (every byte checked against its digest, and the outputs
  against the record and SHA256SUMS);
- :mod:`.trust`: ``attestations``: which distinct trusted keys attest to the release's outputs.

HTTP is :mod:`composer.images.registry`'s and :mod:`composer.images.push`'s; signing is
:mod:`composer.repro.attest`'s; rebuilding is :mod:`composer.repro.verify`'s.
"""
