"""What is kept between builds, as a whole: ``cache ls``, ``rm``, ``clean``, ``verify``,
``import`` and ``export`` (``maintain``) over the image store (:mod:`composer.images.cache`) and
phase one's results (:mod:`composer.rootfs.memo`); linuxkit's own cache commands and arguments
(``linuxkit``)."""
