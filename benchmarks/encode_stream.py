"""Streamed encoding (`python -m explorer.encode`: frames read from an HDF5 recording through the
readers, batched, encoded, written chunk by chunk to the float16 store) against the bare
encoder's forward pass on the same batches already in memory, in the same run, alternated
(target: frames/s ratio ≥ 0.8). Both with the reconstruction errors left out (`--no-errors`):
the ratio is the streaming's overhead over the encoder, not the cost of a decode.

    python -m benchmarks.encode_stream [--n 16384] [--batch-size 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.load import progress

ROOT = Path(__file__).resolve().parents[1]


def bare_forward(model, images: torch.Tensor, batch_size: int) -> float:
    """Frames/s of model.encode over the batches, the frames already preprocessed in memory."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            model.encode(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - t0)


def streamed(data: Path, cache: Path, batch_size: int) -> float:
    """Frames/s of the whole CLI run's encode, into an empty store."""
    from explorer.encode import main

    shutil.rmtree(cache, ignore_errors=True)
    os.environ["SPECKLE_VAE_CACHE"] = str(cache)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["--checkpoint", str(ROOT / "models" / "demo"), "--data", str(data), "--json"]
            + ["--batch-size", str(batch_size), "--no-errors", "--device", "cpu"]
        )
    if code != 0:
        raise RuntimeError(f"explorer.encode exited with {code}")
    return json.loads(out.getvalue().splitlines()[-1])["frames_per_second"]


def run(n: int = 16384, batch_size: int = 256, repeats: int = 2) -> list[dict]:
    from frames import ImageFolder, Normalization
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf
    from vae.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rec"
        write_dataset(simulate_mmf(n, seed=7), data, file_format="h5")
        progress(f"encode_stream: {n} frames simulated into one HDF5 file")
        ck = load_checkpoint(ROOT / "models" / "demo")
        norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
        dataset = ImageFolder(data, ck.model_config.image_size, norm)
        images = torch.stack([dataset[i] for i in range(len(dataset))])
        bare, stream = [], []
        for r in range(repeats):  # ABAB: load from other jobs falls on both alike
            bare.append(bare_forward(ck.model, images, batch_size))
            stream.append(streamed(data, Path(tmp) / "cache", batch_size))
            progress(f"encode_stream #{r}: bare {bare[-1]:.0f}, streamed {stream[-1]:.0f} frames/s")
    ratios = [s / b for s, b in zip(stream, bare, strict=True)]
    return [
        {
            "benchmark": f"encode_stream[n={n},batch={batch_size}]",
            "bare_frames_per_second": statistics.median(bare),
            "streamed_frames_per_second": statistics.median(stream),
            "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "target": ">= 0.8",
            "threads": torch.get_num_threads(),
        }
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.encode_stream")
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    for row in run(args.n, args.batch_size, args.repeats):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
