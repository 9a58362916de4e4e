"""The UKI writer, read back by independent PE readers: pefile (sections, checksum) and
binutils' objdump (reading only; objcopy is what we avoid)."""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
from pathlib import Path

import pefile
import pytest

from composer.errors import ComposerError
from composer.tools import run
from outputs import bootloaders
from outputs.disk import uki

RELEASE = b"6.1.0-test-amd64"
NAMES = [".osrel", ".cmdline", ".uname", ".initrd", ".linux"]


def fake_kernel(size: int = 70001, release: bytes = RELEASE) -> bytes:
    """Enough of a bzImage for the writer: the HdrS setup header and a version string."""
    data = bytearray(random.Random(size).randbytes(size))  # the same bytes in every process
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x3000)
    text = release + b" (builder@host) #1 SMP\0"
    data[0x3200:0x3200 + len(text)] = text
    return bytes(data)


@pytest.fixture
def stub() -> bytes:
    pin = bootloaders.DEFAULTS[bootloaders.EFI_STUB]
    try:
        return bootloaders.load(pin)
    except ComposerError as exc:  # a file of a pinned Debian package, fetched once
        if os.environ.get("CI") == "true":
            pytest.fail(f"the systemd EFI stub is required in CI: {exc}")
        pytest.skip(f"the systemd EFI stub is unavailable: {exc}")


def build(tmp_path: Path, stub: bytes, kernel: bytes, initrd: bytes,
          cmdline: bytes = b"console=ttyS0 text") -> tuple[Path, int]:
    (tmp_path / "kernel").write_bytes(kernel)
    (tmp_path / "initrd").write_bytes(initrd)
    out = tmp_path / "uki.efi"
    with open(out, "w+b") as f:
        size = uki.write_uki(f, stub, osrel=b'NAME="x"\n', cmdline=cmdline,
                             kernel=tmp_path / "kernel", initrd=tmp_path / "initrd")
    return out, size


def test_sections_contents_and_checksum(tmp_path: Path, stub: bytes) -> None:
    kernel, initrd = fake_kernel(), os.urandom(300001)  # odd sizes: padding and checksum
    path, size = build(tmp_path, stub, kernel, initrd)
    assert path.stat().st_size == size
    pe = pefile.PE(str(path))
    original = pefile.PE(data=stub)
    names = [s.Name.rstrip(b"\0").decode() for s in pe.sections]
    old = [s.Name.rstrip(b"\0").decode() for s in original.sections]
    assert names == old + NAMES and ".sbat" in old
    added = {s.Name.rstrip(b"\0").decode(): s for s in pe.sections[len(old):]}
    contents = {".osrel": b'NAME="x"\n', ".cmdline": b"console=ttyS0 text",
                ".uname": RELEASE, ".initrd": initrd, ".linux": kernel}
    for name, want in contents.items():
        section = added[name]
        assert section.Misc_VirtualSize == len(want)
        assert section.get_data()[:len(want)] == want, name
        assert section.PointerToRawData % pe.OPTIONAL_HEADER.FileAlignment == 0
        assert section.VirtualAddress % pe.OPTIONAL_HEADER.SectionAlignment == 0
    last = pe.sections[-1]
    assert pe.OPTIONAL_HEADER.SizeOfImage >= last.VirtualAddress + last.Misc_VirtualSize
    assert pe.FILE_HEADER.TimeDateStamp == original.FILE_HEADER.TimeDateStamp
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum() != 0
    assert path.read_bytes()[0x400:len(stub)] == stub[0x400:]  # the stub's sections as they were


def test_objdump_reads_the_sections(tmp_path: Path, stub: bytes) -> None:
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump is required (apt-get install binutils)") \
            if os.environ.get("CI") == "true" else pytest.skip("apt-get install binutils")
    path, _ = build(tmp_path, stub, fake_kernel(), os.urandom(4096))
    out = run([objdump, "-h", path], capture=True).stdout.decode()
    assert "pei-x86-64" in out
    lines = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [ln[1] for ln in lines][-5:] == NAMES


def test_same_inputs_same_bytes(tmp_path: Path, stub: bytes) -> None:
    kernel, initrd = fake_kernel(), os.urandom(5000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = build(tmp_path / "a", stub, kernel, initrd)
    second, _ = build(tmp_path / "b", stub, kernel, initrd)
    assert first.read_bytes() == second.read_bytes()
    third, _ = build(tmp_path / "a", stub, kernel, initrd, cmdline=b"console=tty0")
    assert third.read_bytes() != second.read_bytes()


def reference_checksum(data: bytes) -> int:
    """The end-around-carry word sum, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("<H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("chunks", [[b"\x01"], [b"\x01\x02\x03", b"\x04"], [b"ab", b"c", b"d"],
                                    [b""], [b"\xff\xff" * 3], [b"\x00\x00"], [b"\xff", b"\xff"],
                                    [b"\xfe\xff", b"\x01\x00"], [bytes(range(256)) * 50, b"z"]])
def test_checksum_matches_the_word_sum(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    parts = uki.Checksum()
    for chunk in chunks:
        parts.add(chunk)
    assert parts.value() == reference_checksum(data) + len(data)


def test_without_a_bzimage_header_there_is_no_uname(tmp_path: Path, stub: bytes) -> None:
    path, _ = build(tmp_path, stub, b"MZ" + bytes(5001), b"")
    pe = pefile.PE(str(path))
    names = [s.Name.rstrip(b"\0").decode() for s in pe.sections]
    assert names[-4:] == [".osrel", ".cmdline", ".initrd", ".linux"]
    assert pe.verify_checksum()


def test_stub_without_room_for_headers(tmp_path: Path, stub: bytes) -> None:
    cramped = bytearray(stub)
    layout = uki.parse_stub(stub)
    struct.pack_into("<I", cramped, layout.optional + 60, layout.section_table_end + 40)
    with pytest.raises(ComposerError, match="no room"):
        build(tmp_path, bytes(cramped), fake_kernel(), b"")


def test_not_a_pe_stub() -> None:
    with pytest.raises(ComposerError, match="not a PE"):
        uki.parse_stub(b"\x7fELF" + bytes(100))
    with pytest.raises(ComposerError, match="not a PE"):
        uki.write_uki(io.BytesIO(), b"MZ" + bytes(100), osrel=b"", cmdline=b"",
                      kernel=Path("/nonexistent"), initrd=Path("/nonexistent"))
