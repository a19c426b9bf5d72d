"""Lab recordings (multi-page TIFF, OME-TIFF, BigTIFF, ImageJ, HDF5, MAT v5 and v7.3) as data
sets, uploads and `speckle stats` input, each frame a sample with the right pixels; paired
recordings; dataset.toml; input patterns by frame name; and the simulator's tiff/h5 output read
back."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from frames import ImageError, ImageFolder, Layout, Normalization, pattern_frames, read_image
from speckle import cli
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from tests.data_files import lab_stack, write_lab_files, write_mat73

FRAMES = lab_stack()  # (5, 12, 16) uint16


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("lab")
    return root, write_lab_files(root, FRAMES)


def test_every_format_is_a_dataset_with_one_sample_per_frame(lab_dir) -> None:
    root, prefixes = lab_dir
    ds = ImageFolder(root, 12, Normalization("fixed"))
    assert ds.skipped == []
    names = list(ds.labels["file"])
    for prefix in prefixes.values():
        for k in range(len(FRAMES)):
            i = names.index(f"{prefix}#{k}")
            np.testing.assert_array_equal(ds.read_raw(i).pixels, FRAMES[k])
            assert ds.read_raw(i).full_scale == 65535
    assert len(ds) == len(prefixes) * len(FRAMES)
    assert ds[0].shape == (1, 12, 12)


@pytest.mark.parametrize(
    "name", ["stack.tif", "ome.ome.tif", "big.tif", "imagej.tif", "run.h5", "v5.mat", "v73.mat"]
)
def test_every_format_uploads_frame_by_frame(lab_dir, name: str) -> None:
    from explorer.uploads import load_uploads

    root, prefixes = lab_dir
    data = (root / name).read_bytes()
    layout = Layout(axes="HWN" if name.endswith(".mat") else "NHW")  # the page's axis-order box
    done = []
    ups = load_uploads(
        name,
        data,
        12,
        Normalization("fixed"),
        layout=layout,
        progress=lambda d, t: done.append((d, t)),
    )
    assert [u.error for u in ups] == [None] * len(FRAMES)
    assert [u.name for u in ups] == [f"{prefixes[name]}#{k}" for k in range(len(FRAMES))]
    assert done[-1] == (5, 5)
    np.testing.assert_allclose(ups[3].image, FRAMES[3][:, 2:14] / 65535, atol=1e-6)
    if name.endswith(".mat"):  # without the axis order, MATLAB's (12, 16, 5) has no image
        assert "no image-sized" in load_uploads(name, data, 12, Normalization())[0].error


def test_an_upload_over_the_frame_cap_names_the_rest(lab_dir) -> None:
    from explorer.uploads import load_uploads

    root, _ = lab_dir
    ups = load_uploads("stack.tif", (root / "stack.tif").read_bytes(), 12, Normalization(), limit=2)
    assert [u.name for u in ups[:2]] == ["stack.tif#0", "stack.tif#1"]
    assert len(ups) == 3 and "frames 2 to 4 not read" in ups[2].error


def test_speckle_stats_reads_every_frame(lab_dir, capsys) -> None:
    root, prefixes = lab_dir
    assert cli.main(["stats", str(root), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(prefixes) * len(FRAMES)
    by_name = {(r["file"].removeprefix(f"{root}/"), r["index"]): r for r in rows}
    mean = float(FRAMES[2].mean())
    for prefix in prefixes.values():
        row = by_name[(prefix, 2)]
        assert (row["height"], row["width"]) == (12, 16) and row["mean"] == pytest.approx(mean)
    assert cli.main(["stats", f"{root / 'run.h5'}#/camera/frames"]) == 0
    assert cli.main(["stats", f"{root / 'run.h5'}#/nothing"]) == 1
    assert "no array '/nothing'" in capsys.readouterr().err


def test_paired_recording_shows_its_patterns_and_labels(tmp_path: Path) -> None:
    patterns = (np.random.default_rng(1).random((5, 16, 16)) * 255).astype(np.uint8)
    with h5py.File(tmp_path / "paired.h5", "w") as f:
        f["speckle"] = FRAMES
        f["patterns"] = patterns
        f["meta/power"] = np.arange(5) * 0.5
        f["meta/other"] = np.arange(7)  # not per frame: not a label
    ds = ImageFolder(tmp_path, 12)
    assert len(ds) == 5 and list(ds.labels["power"]) == [0, 0.5, 1.0, 1.5, 2.0]
    assert "other" not in ds.labels.columns
    np.testing.assert_allclose(ds.pattern(3), patterns[3] / 255, atol=1e-6)
    np.testing.assert_array_equal(ds.read_raw(3).pixels, FRAMES[3])
    # A labels.csv value wins over the file's own.
    (tmp_path / "labels.csv").write_text("file,power\npaired.h5#/speckle#1,9\n")
    assert list(ImageFolder(tmp_path, 12).labels["power"]) == [0, 9, 1.0, 1.5, 2.0]


PATTERNS = (np.random.default_rng(4).random((5, 16, 16)) * 255).astype(np.uint8)


def _pattern_files(root: Path) -> None:
    """The same five patterns as a paired HDF5 recording, a multi-page TIFF, an .npy and a .mat in
    MATLAB's (H, W, N) order, whose folder's dataset.toml says so."""
    with h5py.File(root / "run.h5", "w") as f:
        f["speckle"] = FRAMES
        f["patterns"] = PATTERNS
    tifffile.imwrite(root / "stack.tif", PATTERNS, photometric="minisblack")
    np.save(root / "patterns.npy", PATTERNS)
    (root / "mat").mkdir()
    scipy.io.savemat(root / "mat" / "slm.mat", {"patterns": PATTERNS.transpose(1, 2, 0)})
    (root / "mat" / "dataset.toml").write_text('axes = "HWN"\n')


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("run.h5#/patterns#2", ["run.h5#/patterns#2"]),
        ("run.h5#patterns#2", ["run.h5#/patterns#2"]),  # HDF5 paths match without their "/"
        ("run.h5#2", ["run.h5#/patterns#2"]),  # a paired recording's frame is its pattern's
        ("run.h5", [f"run.h5#/patterns#{k}" for k in range(5)]),
        ("stack.tif#2", ["stack.tif#2"]),
        ("stack.tif", [f"stack.tif#{k}" for k in range(5)]),
        ("patterns.npy#2", ["patterns.npy#2"]),
        ("mat/slm.mat#patterns#2", ["mat/slm.mat#patterns#2"]),
    ],
)
def test_patterns_by_frame_name_in_every_format(tmp_path: Path, name: str, frames: list) -> None:
    _pattern_files(tmp_path)
    names, read = pattern_frames(tmp_path / name)
    assert names == [f"{tmp_path}/{f}" for f in frames]
    got = list(read)
    assert [n for n, _ in got] == names
    for (_, raw), frame in zip(got, frames, strict=True):
        np.testing.assert_array_equal(raw.pixels, PATTERNS[int(frame.rpartition("#")[2])])
        assert raw.full_scale == 255
    # An upload: the file's bytes, its name, and the frame part.
    data = (tmp_path / name.partition("#")[0]).read_bytes()
    if not name.startswith("mat/"):
        upload = pattern_frames(data, "up", name.partition("#")[2] or None)[0]
        assert upload == [f"up{f.removeprefix(name.partition('#')[0])}" for f in frames]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("run.h5#/patterns#9", "run.h5#/patterns: no frame #9 (5 frames: #0 to #4)"),
        ("run.h5#/nope#0", "run.h5: no array '/nope' (frames: "),
        ("gone.h5#/patterns#0", "gone.h5: no such file"),
        ("stack.tif#x", "stack.tif: no array 'x'"),
        ("one.png#3", "one.png: one 2-D image, not a stack"),
    ],
)
def test_a_bad_pattern_name_is_one_line_naming_the_file(
    tmp_path: Path, name: str, problem: str
) -> None:
    _pattern_files(tmp_path)
    Image.fromarray(PATTERNS[0]).save(tmp_path / "one.png")
    with pytest.raises(ImageError) as e:
        list(pattern_frames(tmp_path / name)[1])
    assert str(e.value).startswith(f"{tmp_path}/{problem}") and "\n" not in str(e.value)


def test_one_pattern_of_a_stack_must_be_named(tmp_path: Path) -> None:
    _pattern_files(tmp_path)
    with pytest.raises(ImageError, match=r"run.h5: holds 5 patterns; name one: .*#/patterns#0"):
        pattern_frames(tmp_path / "run.h5", single=True)
    assert len(pattern_frames(tmp_path / "run.h5#/patterns#4", single=True)[0]) == 1


def test_dataset_toml_picks_arrays_axes_and_fields(tmp_path: Path) -> None:
    field = np.random.default_rng(2).standard_normal((3, 10, 14)) + 1j
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["E"] = field.transpose(1, 2, 0)  # MATLAB-style (H, W, N)
        f["slm"] = np.ones((8, 8, 3), np.uint8)  # the same axis order
        f["camera"] = FRAMES[:3]
    (tmp_path / "dataset.toml").write_text('axes = "HWN"\n')
    warned: list[str] = []
    with pytest.raises(ImageError, match="no usable images"):
        ImageFolder(tmp_path, 10, log=warned.append)
    assert any(m.startswith("f.h5#/E: complex array") and "field = true" in m for m in warned)
    (tmp_path / "dataset.toml").write_text(
        'speckle = "E"\naxes = "HWN"\nfield = true\npatterns = "slm"\n'
    )
    ds = ImageFolder(tmp_path, 10)
    assert list(ds.labels["file"]) == [f"f.h5#/E#{k}" for k in range(3)]
    np.testing.assert_allclose(ds.read_raw(1).pixels, np.abs(field[1]) ** 2, rtol=1e-6)
    assert ds.pattern(2).shape == (8, 8)
    (tmp_path / "dataset.toml").write_text('axes = "sideways"\n')
    warned.clear()
    ds = ImageFolder(tmp_path, 10, log=warned.append)
    assert any(
        m.startswith("dataset.toml: unusable") and "axes must be one of" in m for m in warned
    )
    assert list(ds.labels["file"]) == [f"f.h5#/camera#{k}" for k in range(3)]  # the defaults


def test_mat_files_keep_matlab_order_and_label_vectors(tmp_path: Path) -> None:
    hwn = FRAMES.transpose(1, 2, 0)
    scipy.io.savemat(tmp_path / "a.mat", {"frames": hwn, "power": np.arange(5.0)[None]})
    write_mat73(tmp_path / "b.mat", {"frames": hwn, "power": np.arange(5.0)[None]})
    (tmp_path / "dataset.toml").write_text('axes = "HWN"\n')
    ds = ImageFolder(tmp_path, 12)
    assert list(ds.labels["file"])[:2] == ["a.mat#frames#0", "a.mat#frames#1"]
    for i in range(10):
        np.testing.assert_array_equal(ds.read_raw(i).pixels, FRAMES[i % 5])
    assert list(ds.labels["power"]) == [0, 1, 2, 3, 4] * 2


@pytest.mark.parametrize("file_format", ["tiff", "h5"])
def test_simulator_output_round_trips_as_lab_data(tmp_path: Path, file_format: str) -> None:
    sim = simulate_mmf(6, seed=3, size=32)
    write_dataset(sim, tmp_path / "png")
    write_dataset(sim, tmp_path / file_format, file_format=file_format)
    png, lab = ImageFolder(tmp_path / "png", 32), ImageFolder(tmp_path / file_format, 32)
    assert len(lab) == 6 and lab.skipped == []
    for i in range(6):
        np.testing.assert_array_equal(lab.read_raw(i).pixels, png.read_raw(i).pixels)
        np.testing.assert_allclose(lab.pattern(i), png.pattern(i))
    assert list(lab.labels["digit"]) == list(png.labels["digit"])
    meta = json.loads((tmp_path / file_format / "simulation.json").read_text())
    assert meta["file_format"] == file_format and meta["kind"] == "mmf"


def test_read_image_still_refuses_a_stack_with_a_pointer(lab_dir) -> None:
    root, _ = lab_dir
    with pytest.raises(Exception, match="5 frames .*read it as a stack"):
        read_image(root / "stack.tif")
