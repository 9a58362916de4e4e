"""The OCI image format's words, shared by both phases: references (``refs``, normalised the
way Docker does), media types and annotation keys (``media``), and the documents we write
(``documents``: descriptors, image configs, manifests). Nothing here does I/O."""
