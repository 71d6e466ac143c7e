"""Uploaded model archives (``dlcprune.core.archives``): unpacked once, under the same safety layer
as the dataset archives, and never left half-extracted."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from dlcprune.core import archives
from dlcprune.core.archives import unpack_model
from dlcprune.core.errors import ModelError
from dlcprune.core.formats import ReadLimits
from tests.formats.builders import tar_info, write_tar, write_zip

MODEL = {
    "export/model/config.json": b'{"model_type": "bert"}',
    "export/model/model.safetensors": b"\x00" * 4096,
    "export/model/tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
}


def _leftovers(dest: Path) -> list[str]:
    """Anything the unpacking left next to ``dest`` (a partial folder would show here)."""
    return sorted(p.name for p in dest.parent.iterdir())


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar"])
def test_unpacks_to_the_folder_holding_config_json(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"m.{kind}"
    if kind == "zip":
        write_zip(path, MODEL)
    else:
        write_tar(path, MODEL, mode="w:gz" if kind == "tar.gz" else "w")
    dest = tmp_path / "cache" / "models" / "w1"
    root = unpack_model(path, dest)
    assert root == dest / "export" / "model"
    assert (root / "model.safetensors").read_bytes() == MODEL["export/model/model.safetensors"]
    assert (root / "tokenizer" / "vocab.txt").read_bytes() == b"[PAD]\n[UNK]\n"
    assert _leftovers(dest) == ["w1"]
    # Unpacked once: a second call reuses the folder without reading the archive.
    path.unlink()
    assert unpack_model(path, dest) == root


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil/config.json", "contains '..'"),
        ("/etc/config.json", "absolute path"),
        ("C:/model/config.json", "absolute path"),
        ("model\\config.json", "backslash"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_unsafe_member_names_are_refused(tmp_path: Path, kind: str, name: str, why: str) -> None:
    files = {"model/config.json": b"{}", name: b"{}"}
    path = tmp_path / f"m.{kind}"
    if kind == "zip":
        write_zip(path, files)
    else:
        write_tar(path, files, mode="w")
    dest = tmp_path / "out" / "w"
    with pytest.raises(ModelError, match=why) as err:
        unpack_model(path, dest)
    assert err.value.member == name and err.value.path == str(path)
    assert err.value.code == "invalid_model"
    assert not (tmp_path / "out").exists() or _leftovers(dest) == []


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/config.json", b"{}")
        link = zipfile.ZipInfo("model/weights.bin")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ModelError, match="symbolic links are not allowed") as err:
        unpack_model(path, tmp_path / "out")
    assert err.value.member == "model/weights.bin"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kind", "why"),
    [(tarfile.SYMTYPE, "links are not allowed"), (tarfile.CHRTYPE, "special files")],
)
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes, why: str) -> None:
    path = tmp_path / "m.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(tar_info("model/config.json", 2), io.BytesIO(b"{}"))
        odd = tar_info("model/weights.bin", kind=kind)
        odd.linkname = "/etc/passwd"
        tf.addfile(odd)
    with pytest.raises(ModelError, match=why) as err:
        unpack_model(path, tmp_path / "out")
    assert err.value.member == "model/weights.bin"


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_and_bytes_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    files = {"m/config.json": b"{}", "m/a.bin": b"a" * 100, "m/b.bin": b"b" * 100}
    path = tmp_path / f"m.{kind}"
    if kind == "zip":
        write_zip(path, files)
    else:
        write_tar(path, files, mode="w")
    monkeypatch.setattr(archives, "_LIMITS", ReadLimits(max_members=2))
    with pytest.raises(ModelError, match="more than 2 members"):
        unpack_model(path, tmp_path / "a")
    monkeypatch.setattr(archives, "_LIMITS", ReadLimits(max_total_bytes=150, max_member_bytes=150))
    with pytest.raises(ModelError, match="max_total_bytes") as err:
        unpack_model(path, tmp_path / "b")
    assert err.value.member == "m/b.bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m.{kind}"]


def test_corrupt_and_foreign_archives(tmp_path: Path) -> None:
    files = {"m/config.json": b"{}", "m/w.bin": b"w" * 5000}
    path = write_zip(tmp_path / "m.zip", files, compression=zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"w" * 16)
    raw[at : at + 16] = b"x" * 16  # stored data no longer matches its CRC
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="corrupt or truncated archive") as err:
        unpack_model(path, tmp_path / "out")
    assert err.value.member == "m/w.bin"
    other = tmp_path / "m.bin"
    other.write_bytes(b"not an archive at all" * 30)
    with pytest.raises(ModelError, match="not a zip or tar archive"):
        unpack_model(other, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.zip"]


def test_an_archive_without_config_json_is_not_a_model(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "m.zip", {"weights/model.bin": b"w"})
    with pytest.raises(ModelError, match=r"no config\.json"):
        unpack_model(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
