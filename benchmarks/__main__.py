"""Run every benchmark and write benchmarks/results.json:

    python -m benchmarks            # the full set (about 10 minutes on 2 cores)
    python -m benchmarks --quick    # smaller sizes, under 5 minutes

Each benchmark reports a figure and a ratio against a reference measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common.atomic import atomic_write

RESULTS = Path(__file__).resolve().parent / "results.json"


def _suite(quick: bool) -> list[tuple[str, object]]:
    from benchmarks import (
        atlas_build,
        decode,
        encode_stream,
        first_start,
        foreign_model,
        generate,
        generate_click,
        inverse,
        load,
        retrain,
        slider,
        train_speed,
        upload,
    )

    return [
        ("train_speed", lambda: train_speed.run(steps=20 if quick else 60)),
        ("generate", lambda: generate.run(quick)),
        ("generate_click", lambda: generate_click.run(clicks=3 if quick else 5)),
        ("decode", decode.run),
        ("foreign_model", lambda: foreign_model.run(quick)),
        ("inverse", inverse.run),
        ("slider", lambda: slider.run(moves=10 if quick else 30)),
        ("upload", lambda: upload.run(n_atlas=400 if quick else 2000)),
        ("atlas_build", lambda: atlas_build.run(n=1024 if quick else 4096)),
        ("encode_stream", lambda: encode_stream.run(n=4096 if quick else 16384)),
        # Quick stops at the first map: UMAP's first fit would take a sixth of its budget.
        ("first_start", lambda: first_start.run(n=1000 if quick else 2000, wait_umap=not quick)),
        (
            "retrain",
            lambda: retrain.run(
                steps=30 if quick else 300, n=256 if quick else 512, repeats=1 if quick else 2
            ),
        ),
        # K=1 makes the fewest moves, and its p95 is the reference: 10 s is the least that
        # gives it more than a handful. Quick runs K=1 and 8 only, without the bare-page
        # reference or the flat-out levels, on a 1000-image set: its figures are indicative.
        (
            "load",
            lambda: (
                load.run(seconds=10.0, levels=(1, 8), n=1000)
                if quick
                else load.run(seconds=30.0)
                + load.run_reference(seconds=30.0)
                + load.run(seconds=30.0, levels=(1, 8), think=0.0)
            ),
        ),
    ]


def _ratio(r: dict) -> str:
    return f"{r['ratio']:.2f}" if isinstance(r.get("ratio"), float) else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, under 5 minutes on 2 cores")
    p.add_argument("--only", action="append", help="run only these benchmarks (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("SPECKLE_VAE_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    results, t0 = [], time.perf_counter()
    for name, fn in _suite(args.quick):
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        try:
            rows = fn()
        except Exception as e:  # one broken benchmark must not hide the others
            rows = [{"benchmark": name, "error": f"{type(e).__name__}: {e}"}]
        for r in rows:
            r["seconds_to_run"] = round(time.perf_counter() - t, 1)
            results.append(r)
            print(json.dumps(r), flush=True)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        import torch

        machine |= {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    except ImportError:
        pass
    doc = {
        "quick": args.quick,
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    atomic_write(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"\n{'benchmark':<48} {'ratio':>8}")
    for r in results:
        print(f"{r['benchmark']:<48} {_ratio(r):>8}" + (f"  {r['error']}" if "error" in r else ""))
    print(f"\nwrote {args.out} in {doc['total_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
