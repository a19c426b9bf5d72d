"""frames.arrays: .npy/.npz headers checked before any pixel is read, single arrays read as
images, and stacks read frame by frame (`read_frames`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frames import ImageError, read_frames, read_image
from tests.data_files import npy_bytes, speckle, u16


def test_hostile_npy_header_does_not_allocate(tmp_path: Path) -> None:
    header = npy_bytes(np.zeros((1, 1), np.float64))
    huge = header.replace(b"(1, 1)", b"(10000000, 1000000)")  # 80 TB claimed, 8 bytes present
    with pytest.raises(ImageError, match="truncated"):
        read_image(huge, "huge.npy")
    (tmp_path / "huge.npy").write_bytes(huge)
    with pytest.raises(ImageError, match="truncated"):
        list(read_frames(tmp_path / "huge.npy"))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 4),
    st.integers(1, 40),
    st.sampled_from(["uint8", "uint16", "float32", "float64", "int16", "bool"]),
    st.booleans(),
)
def test_random_arrays_read_exactly_when_they_are_images(
    ndim: int, side: int, dtype: str, poison: bool
) -> None:
    arr = np.ones((side,) * ndim, dtype=dtype)
    poisoned = poison and arr.dtype.kind == "f" and arr.size > 0
    if poisoned:
        arr.flat[0] = np.nan
    usable = ndim == 2 and side >= 8 and not poisoned
    try:
        raw = read_image(npy_bytes(arr), "a.npy")
    except ImageError as e:
        assert not usable, e
        return
    assert usable
    np.testing.assert_array_equal(raw.pixels, arr.astype(np.float32))


def test_read_frames_gives_each_frame_of_a_stack(tmp_path: Path) -> None:
    stack = u16(4 * 16, 16).reshape(4, 16, 16)
    np.save(tmp_path / "s.npy", stack)
    frames = list(read_frames(tmp_path / "s.npy"))
    assert [(key, k) for key, k, _ in frames] == [(None, 0), (None, 1), (None, 2), (None, 3)]
    for (_, k, raw), want in zip(frames, stack, strict=True):
        np.testing.assert_array_equal(raw.pixels, want)
        assert raw.full_scale == 65535 and raw.source == "npy uint16", k
        assert raw.pixels.flags.writeable  # a copy, not a view of the read-only map

    np.save(tmp_path / "one.npy", stack[0])
    [(key, k, raw)] = read_frames(tmp_path / "one.npy")
    assert key is None and k is None
    np.testing.assert_array_equal(raw.pixels, stack[0])

    np.savez(tmp_path / "multi.npz", a=stack[:2], b=stack[3])
    np.savez_compressed(tmp_path / "zipped.npz", stack[:3])
    multi = [(key, k) for key, k, _ in read_frames(tmp_path / "multi.npz")]
    assert multi == [("a", 0), ("a", 1), ("b", None)]
    zipped = list(read_frames(tmp_path / "zipped.npz"))
    assert [(key, k) for key, k, _ in zipped] == [(None, 0), (None, 1), (None, 2)]
    np.testing.assert_array_equal(zipped[2][2].pixels, stack[2])


def test_read_frames_names_the_bad_frame_or_file(tmp_path: Path) -> None:
    stack = speckle(3 * 16, 16).reshape(3, 16, 16).astype(np.float32)
    stack[2, 0, 0] = np.inf
    np.save(tmp_path / "s.npy", stack)
    frames = read_frames(tmp_path / "s.npy", "s.npy")
    assert next(frames)[1] == 0 and next(frames)[1] == 1
    with pytest.raises(ImageError, match=r"^s\.npy#2: contains NaN or Inf$"):
        next(frames)
    np.savez(tmp_path / "m.npz", a=stack[:2], b=np.zeros((4, 16, 16, 2)))
    with pytest.raises(ImageError, match=r"^m\.npz#b: expected a 2-D image or a 3-D"):
        list(read_frames(tmp_path / "m.npz", "m.npz"))
    np.save(tmp_path / "tiny.npy", np.zeros((2, 4, 4)))
    with pytest.raises(ImageError, match="smaller than 8×8"):
        list(read_frames(tmp_path / "tiny.npy"))
    (tmp_path / "fake.npy").write_bytes(b"not numpy")
    with pytest.raises(ImageError, match="not a .npy file"):
        list(read_frames(tmp_path / "fake.npy"))
    with pytest.raises(ImageError, match="no such file"):
        list(read_frames(tmp_path / "missing.npy"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ImageError, match=r"^.*broken\.npz: not a readable array \("):
        list(read_frames(tmp_path / "broken.npz"))
