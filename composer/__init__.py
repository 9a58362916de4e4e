"""image-composer: reproducible system images from linuxkit-style YAML.

The packages read as the pipeline, top to bottom (import-linter's contracts in pyproject.toml
keep every import pointing down this list):

    cli, commands/   the command line: parse arguments, call a stage, print one-line errors
    build            the pipeline: spec -> pinned images -> canonical rootfs tar -> outputs
    cache/           what is kept between builds: ls, rm, clean, verify, import, export
    repro/           reproducibility as a feature: record, verify, diff, attest, SBOM
    pkg/             ``pkg build``: package directories and pinned .debs -> images
    rootfs/          phase one: layers -> tree -> bundles -> the canonical rootfs tar
    images/          image sources and sinks, the OCI-layout cache, the lock file
    spec/            YAML -> a validated, merged, typed Spec
    tar/, oci/, streams/, run/   shared leaves: the canonical tar writer and readers, OCI
                     references, media types and documents, digests and the gzip writer,
                     ``run qemu``

and, beside them, the leaves every stage may use: errors, epoch, canonjson, tools, atomic,
progress, defaults. Phase two is the sibling package :mod:`outputs`.
"""

__version__ = "0.1.0"
