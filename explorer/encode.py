"""Encode a data set into the app's latent store ahead of time, for one too big to encode on the
spot: frames are streamed from any reader (folders, stacks, HDF5) in batches, and μ goes to a
float16 memory-mapped store (vae.latent_store), chunk by chunk. Run it again after a stop and it
resumes at the first unfinished chunk.

    python -m explorer.encode --checkpoint models/demo --data data/big
    torchrun --nproc_per_node=8 -m explorer.encode --checkpoint runs/paper --data /shared/big

Under torchrun, rank r encodes the chunks i with i % world == r into the same store files; the
app reads the store when it is complete (vae.latents.dataset_latents).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from tqdm import tqdm

from common.cli import DATA_HELP, summary
from common.device import pick_device
from frames import ImageError, ImageFolder, Normalization
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.latent_store import CHUNK, StoreError, create_store, open_store
from vae.latents import encode_to_store, store_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer.encode", description=summary(__doc__))
    p.add_argument("--checkpoint", required=True, help="checkpoint or run directory")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--batch-size", type=int, default=256, help="images per encoder batch")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument(
        "--no-errors",
        dest="errors",
        action="store_false",
        help="skip the reconstruction errors (one decode per frame); the app computes them later",
    )
    p.add_argument(
        "--chunk", type=int, default=CHUNK, help="frames per chunk: the unit of resume and of ranks"
    )
    p.add_argument("--json", action="store_true", help="print the run's figures as JSON")
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
        path = store_path(ck, dataset)
        layout = (len(dataset), ck.model_config.latent_dim, ck.id, dataset.fingerprint())
        if rank == 0:
            store = create_store(path, *layout, errors=args.errors, chunk=args.chunk)
        if world > 1:
            torch.distributed.barrier()  # rank 0 has created (or checked) the store
        if rank != 0:
            store = open_store(path)
    except (CheckpointError, ImageError, StoreError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    before = store.rows_done()
    if rank == 0 and before:
        print(f"resuming: {before} of {store.n} frames already encoded", file=sys.stderr)
    t0 = time.perf_counter()
    # Every rank's bar counts its own frames; rank 0's ETA is the run's (ranks share the work).
    bar = tqdm(
        total=store.n,
        initial=before,
        unit="frame",
        desc=f"encoding (rank {rank})" if world > 1 else "encoding",
        disable=rank != 0,
        file=sys.stderr,
    )
    encoded = encode_to_store(
        ck,
        dataset,
        store,
        rank,
        world,
        args.batch_size,
        args.workers,
        progress=lambda k: bar.update(k * world),
    )
    bar.close()
    seconds = time.perf_counter() - t0
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank == 0:
        fps = encoded * world / seconds if seconds > 0 else float("nan")
        figures = {
            "frames": store.n,
            "encoded_now": store.rows_done() - before,
            "seconds": round(seconds, 3),
            "frames_per_second": round(fps, 1),
            "processes": world,
            "complete": store.complete,
            "store": str(path),
        }
        if args.json:
            print(json.dumps(figures))
        print(
            f"encoded {figures['encoded_now']} of {store.n} frames in {seconds:.1f} s "
            f"({fps:.0f} frames/s) on {world} process(es) into {path}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
