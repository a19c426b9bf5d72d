"""Speed of a foreign model: the paper-size VAE brought in as two torch.export programs (the
"exported" checkpoint kind, vae.exported) against the same weights in our own format, in the same
run.

Two figures, each as a ratio exported / ours (below 1: the exported model is faster):
- key press → image: one latent decoded the app's way (explorer.serving.decode_interactive, on
  the interactive thread), what a Traverse slider move waits for;
- encode throughput: vae.inference.encode_dataset over random paper-size images (images/s).

Rounds alternate the two models, so that a busy neighbour slows both alike. Each figure is the
median over rounds with its range, and each ratio the median of the rounds' paired ratios with
their range: on a shared machine the range is the interval to read. Loading (hashing, vetting and
shape checks included) is timed LOADS times each, alternating.

    python -m benchmarks.foreign_model [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from benchmarks.timing import median_time
from explorer import serving
from vae import inference
from vae.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from vae.config import PRESETS
from vae.exported import ExportedConfig, save_exported
from vae.model import VAE

PRESET = "paper"
LOADS = 3  # loads of each checkpoint, alternating


class _Encoder(torch.nn.Module):
    """What a user exports: x → (μ, log σ²)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encoder(x)
        return post.mean, post.logvar


def _models(folder: Path) -> tuple[object, object, dict]:
    """The same seeded paper-size weights as our checkpoint and as an exported one."""
    torch.manual_seed(0)
    config = PRESETS[PRESET]
    vae = VAE(config).eval()
    meta = {"model": config.to_dict(), "preprocessing": {"image_size": config.image_size}}
    meta["preprocessing"]["normalization"] = {"mode": "max"}
    save_checkpoint(folder / "ours", vae, meta | {"beta": 1.0, "recon": "sse"})
    batch = torch.export.Dim("batch")
    t0 = time.perf_counter()
    x, z = torch.rand(2, 1, config.image_size, config.image_size), torch.randn(2, config.latent_dim)
    enc = torch.export.export(_Encoder(vae), (x,), dynamic_shapes={"x": {0: batch}})
    dec = torch.export.export(vae.decoder, (z,), dynamic_shapes={"z": {0: batch}})
    torch.export.save(enc, folder / "enc.pt2")
    torch.export.save(dec, folder / "dec.pt2")
    export_s = time.perf_counter() - t0
    exported_config = ExportedConfig(config.image_size, config.latent_dim)
    save_exported(
        folder / "exported",
        folder / "enc.pt2",
        folder / "dec.pt2",
        exported_config,
        {k: v for k, v in meta.items() if k != "model"} | {"beta": 1.0, "recon": "sse"},
        FORMAT,
        FORMAT_VERSION,
    )
    loads: dict[str, list[float]] = {"ours": [], "exported": []}
    for _ in range(LOADS):
        for name in loads:
            t0 = time.perf_counter()
            load_checkpoint(folder / name).model  # noqa: B018 (built now: not lazy)
            loads[name].append(time.perf_counter() - t0)
    ours, exported = load_checkpoint(folder / "ours"), load_checkpoint(folder / "exported")
    return ours, exported, {"export_seconds": export_s, "loads": loads}


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _paired(exported: list[float], ours: list[float]) -> dict:
    """The ratio exported / ours of each round (both measured back to back), its median and
    range: pairing cancels most of what a busy neighbour does to a round."""
    ratios = [e / o for e, o in zip(exported, ours, strict=True)]
    median, low, high = _spread(ratios)
    return {"ratio": median, "ratio_range": [low, high], "ratio_per_round": ratios}


def run(quick: bool = False) -> list[dict]:
    rounds, decodes, n_images = (3, 30, 64) if quick else (7, 100, 256)
    with tempfile.TemporaryDirectory(prefix="bench-foreign-") as tmp:
        ours, exported, info = _models(Path(tmp))
        models = {"ours": ours.model, "exported": exported.model}
        size, dz = ours.model_config.image_size, ours.model_config.latent_dim
        z = torch.randn(1, dz).numpy()
        images = TensorDataset(torch.rand(n_images, 1, size, size))

        class Images(torch.utils.data.Dataset):  # encode_dataset wants bare tensors
            def __len__(self) -> int:
                return n_images

            def __getitem__(self, i: int) -> torch.Tensor:
                return images[i][0]

        with torch.inference_mode():  # the two must agree before they are timed
            x = torch.rand(2, 1, size, size)
            same = float((ours.model.encode(x).mean - exported.model.encode(x).mean).abs().max())
        decode_t: dict[str, list[float]] = {k: [] for k in models}
        encode_t: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(rounds):
            for name, model in models.items():
                decode_t[name].append(
                    median_time(lambda m=model: serving.decode_interactive(m, z), decodes, 5)
                )
                t0 = time.perf_counter()
                inference.encode_dataset(model, Images(), batch_size=64)
                encode_t[name].append(n_images / (time.perf_counter() - t0))
    dec = {k: _spread(v) for k, v in decode_t.items()}
    enc = {k: _spread(v) for k, v in encode_t.items()}
    common = {"preset": PRESET, "rounds": rounds, "max_abs_mu_difference": same}
    return [
        {
            "benchmark": f"foreign_model_decode_one_latent[{PRESET},cpu]",
            "seconds": dec["exported"][0],
            "seconds_range": dec["exported"][1:],
            "reference_seconds": dec["ours"][0],
            "reference_seconds_range": dec["ours"][1:],
            **_paired(decode_t["exported"], decode_t["ours"]),
            **common,
        },
        {
            "benchmark": f"foreign_model_encode_throughput[{PRESET},cpu]",
            "images_per_second": enc["exported"][0],
            "images_per_second_range": enc["exported"][1:],
            "reference_images_per_second": enc["ours"][0],
            "reference_images_per_second_range": enc["ours"][1:],
            # Time ratio, as for decode: exported time per image / ours.
            **_paired([1 / v for v in encode_t["exported"]], [1 / v for v in encode_t["ours"]]),
            "images": n_images,
            **common,
        },
        {
            "benchmark": f"foreign_model_load[{PRESET},cpu]",
            "seconds": statistics.median(info["loads"]["exported"]),
            "seconds_range": _spread(info["loads"]["exported"])[1:],
            "reference_seconds": statistics.median(info["loads"]["ours"]),
            "reference_seconds_range": _spread(info["loads"]["ours"])[1:],
            **_paired(info["loads"]["exported"], info["loads"]["ours"]),
            "export_seconds": info["export_seconds"],
            "note": "the exported load includes hashing, vetting and the traced-shape check",
            **common,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.foreign_model", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer rounds and images")
    args = p.parse_args(argv)
    for r in run(args.quick):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
