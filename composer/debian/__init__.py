"""Debian packages as inputs, whatever the host runs: ``deb`` reads a ``.deb`` (ar + tar)
without dpkg and without extracting it; ``pool`` fetches pinned ``.deb`` files by exact name,
version and sha256 from Debian's archive, verified as they stream and cached. ``pkg build``
uses both for the example packages, the disk and ISO formats for their pinned bootloaders."""
