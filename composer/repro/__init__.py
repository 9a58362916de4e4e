"""Reproducibility as a feature.

- ``record``: ``NAME.build.json`` (every input, pinned digest, option and output digest) and
  ``NAME.SHA256SUMS``;
- ``verify``: rebuild from a record in a perturbed environment and compare every byte;
- ``diff``: where two outputs differ (tar, cpio, ISO, gzip, OCI layouts, directories);
- ``attest``: in-toto statements in DSSE envelopes, signed and checked;
- ``sbom``: the SPDX document ``NAME.spdx.json``.
"""
