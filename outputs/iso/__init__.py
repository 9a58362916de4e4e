"""The ISO family: ``iso-bios``, ``iso-efi``, ``iso-efi-initrd``, ``iso-hybrid`` (``formats``:
layouts, boot records, identifiers derived from a content seed) over THE pycdlib wrapper
(``iso9660``), with the EFI system partition made by :mod:`outputs.fat`."""
