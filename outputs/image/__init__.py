"""The image family: ``docker``, ``oci``, ``oci-dir`` and ``docker-context`` (``formats``):
the rootfs as one layer of an OCI image, in the layouts ``docker load``, registries and
linuxkit's docker build context expect."""
