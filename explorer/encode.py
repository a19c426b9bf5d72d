"""Encode a data set into the app's latent cache ahead of time, for one too big to encode on the
spot.

    python -m explorer.encode --checkpoint models/demo --data data/big
    torchrun --nproc_per_node=8 -m explorer.encode --checkpoint runs/paper --data /shared/big

Under torchrun every rank encodes every world-th sample and writes its own shard file; the app
merges the shards when it reads them (vae.latents.dataset_latents).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from common import cache
from common.cli import DATA_HELP, summary
from common.device import pick_device
from frames import ImageError, ImageFolder, Normalization
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.latents import encode_latents, latents_path, shard_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer.encode", description=summary(__doc__))
    p.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--batch-size", type=int, default=256, help="images per encoder batch")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        use_nccl = torch.cuda.is_available() and args.device in ("auto", "cuda")
        torch.distributed.init_process_group(backend="nccl" if use_nccl else "gloo")
    try:
        ck = load_checkpoint(args.checkpoint, device=pick_device(args.device, local_rank))
        norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
        dataset = ImageFolder(args.data, ck.model_config.image_size, norm, log=lambda m: None)
    except (CheckpointError, ImageError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    indices = np.arange(rank, len(dataset), world)
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    arrays = encode_latents(ck, subset, workers=args.workers, batch_size=args.batch_size)
    path = latents_path(ck, dataset)
    if world > 1:
        arrays["index"] = indices
        cache.save(shard_path(path, rank, world), arrays, {"rank": rank, "world": world})
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    else:
        cache.save(path, arrays, {"checkpoint": ck.id})
    if rank == 0:
        print(
            f"encoded {len(dataset)} images in {time.perf_counter() - t0:.1f} s on {world} "
            f"process(es) into {path.with_suffix('.npz')}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
