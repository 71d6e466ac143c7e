"""NumPy ``.npz`` datasets: images and vectors, stored and compressed, refused arrays."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlcprune.core.errors import (
    CorruptArchiveError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
)
from dlcprune.core.formats import NpzReader, open_dataset
from tests.formats.builders import check_error, payloads

# --------------------------------------------------------------------------------------------
# npz


def save_npz(path: Path, compressed: bool, **arrays: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_gray_images_with_labels(tmp_path: Path, compressed: bool) -> None:
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = save_npz(tmp_path / "d.npz", compressed, x=x, y=np.array([2, 10, 2]))
    with open_dataset(path) as ds:
        assert ds.format == "npz" and ds.kind == "image"
        assert ds.ids == ["0", "1", "2"]
        assert ds.labels == ["2", "10", "2"]
        assert ds.classes == {"2": 2, "10": 1}
        assert ds.source(1) == "row 1"
        images = payloads(ds)
        assert all(im.mode == "RGB" and im.size == (5, 4) for im in images)
        assert np.array_equal(np.asarray(images[1])[:, :, 0], x[1])
        assert np.array_equal(np.asarray(images[1])[:, :, 2], x[1])
        np.testing.assert_array_equal(ds.read_rows(1, 3), x[1:3])
        ds.verify()


def test_npz_direct_reads_and_stream_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 6, 7, 3), dtype=np.uint8)
    stored = open_dataset(save_npz(tmp_path / "s.npz", False, x=x))
    packed = open_dataset(save_npz(tmp_path / "c.npz", True, x=x))
    assert isinstance(stored, NpzReader) and isinstance(packed, NpzReader)
    assert stored._fd is not None and packed._fd is None  # the two code paths under test
    for start, stop in [(0, 5), (5, 17), (3, 4), (30, 99), (0, 40)]:
        a, b = stored.read_rows(start, stop), packed.read_rows(start, stop)
        np.testing.assert_array_equal(a, x[start:stop])
        np.testing.assert_array_equal(b, x[start:stop])
        assert type(a) is np.ndarray and a.flags.writeable and b.flags.writeable
    for (i, p), (j, q) in zip(stored.iter_payloads(), packed.iter_payloads(), strict=True):
        assert i == j and p.tobytes() == q.tobytes() == x[i].tobytes()
    stored.close()
    packed.close()


def test_npz_fortran_order(tmp_path: Path) -> None:
    x = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(6, 4))
    for compressed in (False, True):
        ds = open_dataset(save_npz(tmp_path / f"f{compressed}.npz", compressed, x=x))
        np.testing.assert_array_equal(ds.read_rows(2, 5), x[2:5])
        assert [p.tolist() for p in payloads(ds)] == x.tolist()


@pytest.mark.parametrize(
    ("x", "pixel"),
    [
        (np.full((2, 3, 3, 3), 0.5, dtype=np.float32), (128, 128, 128)),
        (np.full((2, 3, 3, 3), 300.0), (255, 255, 255)),
        (np.full((2, 3, 3, 1), 7, dtype=np.uint8), (7, 7, 7)),
        (np.full((2, 3, 3, 4), 9, dtype=np.uint8), (9, 9, 9)),
        (np.full((2, 3, 3), -5, dtype=np.int16), (0, 0, 0)),
        (np.ones((2, 3, 3), dtype=bool), (255, 255, 255)),
    ],
    ids=["float01", "float255", "c1", "rgba", "int16", "bool"],
)
def test_npz_image_conversion(tmp_path: Path, x: np.ndarray, pixel: tuple[int, int, int]) -> None:
    ds = open_dataset(save_npz(tmp_path / "d.npz", False, x=x))
    assert ds.labels is None and ds.classes == {}
    images = payloads(ds)
    assert all(im.mode == "RGB" and im.size == (3, 3) for im in images)
    assert images[0].getpixel((1, 1)) == pixel


def test_npz_vectors_with_ids(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.int64).reshape(4, 3)
    ids = np.array(["d", "c", "b", "a"])
    ds = open_dataset(save_npz(tmp_path / "v.npz", True, x=x, ids=ids, y=np.array(["p"] * 4)))
    assert ds.kind == "vector"
    assert ds.ids == ["d", "c", "b", "a"]
    vecs = payloads(ds)
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in vecs)
    assert vecs[3].tolist() == [9.0, 10.0, 11.0]
    ds2 = open_dataset(save_npz(tmp_path / "w.npz", False, x=x, id=np.array([5, 6, 7, 8])))
    assert ds2.ids == ["5", "6", "7", "8"]


@pytest.mark.parametrize(
    ("arrays", "error", "member"),
    [
        (
            {"x": np.zeros((2, 3)), "y": np.array([{"a": 1}, None], dtype=object)},
            InvalidRecordError,
            "y.npy",
        ),
        ({"x": np.array([[1, "a"]], dtype=object)}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3)), "y": np.array([1, 2, 3])}, InvalidRecordError, "y.npy"),
        ({"x": np.zeros((2, 3, 4, 2))}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2,))}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3), dtype=complex)}, InvalidRecordError, "x.npy"),
        ({"x": np.zeros((2, 3)), "ids": np.array(["a", "a"])}, InvalidRecordError, "ids.npy"),
    ],
    ids=["object-y", "object-x", "y-length", "channels", "ndim", "complex", "dup-ids"],
)
def test_npz_refused_arrays(
    tmp_path: Path, arrays: dict[str, np.ndarray], error: type[Exception], member: str
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, member=member)


def test_npz_missing_x_and_empty(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "d.npz", False, features=np.zeros((2, 2)))
    with pytest.raises(MissingFieldError):
        open_dataset(path)
    path = save_npz(tmp_path / "e.npz", False, x=np.zeros((0, 2)))
    with pytest.raises(EmptyDatasetError):
        open_dataset(path)


def test_npz_declared_size_refused_without_allocating(tmp_path: Path) -> None:
    fmt = np.lib.format
    header = io.BytesIO()
    fmt.write_array_header_1_0(
        header,
        {
            "descr": fmt.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False,
            "shape": (10**9, 1000, 1000),
        },
    )
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(64))
    with pytest.raises(LimitExceededError, match="max_array_bytes") as err:
        open_dataset(path)
    check_error(err, path, member="x.npy")


def test_npz_truncated_data(tmp_path: Path) -> None:
    fmt = np.lib.format
    header = io.BytesIO()
    fmt.write_array_header_1_0(
        header,
        {"descr": fmt.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (50, 8)},
    )
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = tmp_path / f"t{compression}.npz"
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr("x.npy", header.getvalue() + bytes(64))
        with pytest.raises(CorruptArchiveError) as err:
            ds = open_dataset(path)
            ds.verify()
        check_error(err, path, member="x.npy")


def test_npz_garbage(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(path)
    check_error(err, path)
