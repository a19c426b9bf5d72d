"""Hostile input: a generated corpus of over 1,000 damaged, absurd and exotic files through the
image reader, pickle payloads under checkpoint names, and the server's safety settings."""

from __future__ import annotations

import io
import pickle
import struct
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frames import ImageError, read_image
from vae import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
MODES = [
    "1",
    "L",
    "LA",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "I;16",
    "I;16B",
    "I;16L",
]
FORMATS = {"PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "JPEG": ".jpg", "GIF": ".gif"}


def _png_claiming(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def corpus(seed: int = 0) -> list[tuple[str, bytes]]:
    """(name, bytes) cases: every PIL mode in every format that takes it, each whole and cut at
    random points and with flipped bytes; absurd dimensions; random bytes; NaN/Inf arrays."""
    rng = np.random.default_rng(seed)
    cases = []
    for mode in MODES:
        try:
            base = Image.fromarray((rng.random((24, 20)) * 255).astype(np.uint8)).convert(mode)
        except (ValueError, OSError):
            base = Image.new(mode, (20, 24))
        for fmt, ext in FORMATS.items():
            buf = io.BytesIO()
            try:
                base.save(buf, format=fmt)
            except (OSError, ValueError, KeyError):
                continue  # this format cannot hold this mode
            data = buf.getvalue()
            cases.append((f"{mode}{ext}", data))
            for cut in rng.integers(1, len(data), 6):
                cases.append((f"{mode}-cut{cut}{ext}", data[:cut]))
            for _ in range(6):
                flipped = bytearray(data)
                for pos in rng.integers(0, len(data), 4):
                    flipped[pos] ^= int(rng.integers(1, 256))
                cases.append((f"{mode}-flip{ext}", bytes(flipped)))
    for w, h in [
        (0, 0),
        (1, 1),
        (1, 10**6),
        (10**6, 10**6),
        (2**31 - 1, 2**31 - 1),
        (65535, 65535),
        (7, 9000),
    ]:
        for depth, colour in [(8, 0), (16, 0), (8, 2), (1, 0)]:
            cases.append((f"bomb-{w}x{h}.png", _png_claiming(w, h, depth, colour)))
    for i in range(400):
        head = [
            b"",
            b"\x89PNG\r\n\x1a\n",
            b"II*\x00",
            b"MM\x00*",
            b"BM",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"\x93NUMPY",
        ][i % 8]
        cases.append(
            (
                f"random{i}" + [".png", ".tif", ".bmp", ".jpg", ".gif", ".npy"][i % 6],
                head + rng.bytes(int(rng.integers(0, 3000))),
            )
        )
    for i, arr in enumerate(
        [
            np.full((16, 16), np.nan),
            np.full((16, 16), np.inf),
            -np.full((16, 16), np.inf),
            np.zeros((0, 16)),
            np.zeros((16,)),
            np.zeros((2, 2, 2, 2)),
            np.zeros((16, 16), complex),
            np.array([[object()]]),
            np.zeros((16, 16), np.float16),
            np.ones((16, 16), bool),
        ]
    ):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        cases.append((f"array{i}.npy", buf.getvalue()))
    return cases


# PIL warns about the damaged TIFF tags it skips and about sizes over its limit (ours); the reader
# leaves warnings to the caller's filters, which are process-wide.
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corpus_has_over_1000_cases_and_none_crashes() -> None:
    cases = corpus()
    assert len(cases) >= 1000
    outcomes = {"image": 0, "error": 0}
    for name, data in cases:
        try:
            raw = read_image(data, name)
        except ImageError as e:
            assert str(e).startswith(f"{name}: ") and "\n" not in str(e), str(e)
            outcomes["error"] += 1
            continue
        assert (
            raw.pixels.ndim == 2
            and raw.pixels.dtype == np.float32
            and np.isfinite(raw.pixels).all()
        )
        assert min(raw.pixels.shape) >= 8
        outcomes["image"] += 1
    # Both outcomes happen: the whole images read, the damaged ones are refused.
    assert outcomes["image"] > 50 and outcomes["error"] > 500, outcomes


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "pytorch_model.bin"])
def test_pickle_payload_under_any_checkpoint_name_is_never_executed(
    tmp_path: Path, tiny_config, name: str
) -> None:
    from vae.model import VAE

    ckpt.save_checkpoint(tmp_path / "c", VAE(tiny_config), {"model": tiny_config.to_dict()})
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "c" / name).write_bytes(pickle.dumps(Payload()))
    if name == "model.safetensors":
        with pytest.raises(ckpt.CheckpointError, match="is a pickle"):
            ckpt.load_checkpoint(tmp_path / "c")
    else:  # a stray .pt/.bin beside the weights is never read
        ckpt.load_checkpoint(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_checkpoint(tmp_path / "c" / name)  # a file is not a checkpoint
    assert not marker.exists()


def test_server_settings_are_safe_by_default() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["address"] == "127.0.0.1"
    assert 0 < config["server"]["maxUploadSize"] <= 200
    from frames import MAX_FILE_BYTES

    assert config["server"]["maxUploadSize"] * 1024 * 1024 >= MAX_FILE_BYTES


def test_server_skips_per_rerun_work() -> None:
    """A full garbage collection after every rerun cost 160 ms a slider move; the file watcher
    walks every imported module on each rerun."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert config["server"]["fileWatcherType"] == "none"
