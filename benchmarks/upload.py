"""Upload to result for one 64×64 image (read, preprocess, encode, decode, pixel and speckle
metrics, map placement, neighbours, OOD percentiles) against encode + decode alone, in the same
run (target: at most 3×), with the UMAP reducer in memory and with a map read from the cache
(placement goes through the nearest latents in both cases, so the two should agree).

    python -m benchmarks.upload
"""

from __future__ import annotations

import io
import json
import os
import tempfile

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import median_time


def run(n_atlas: int = 2000) -> list[dict]:
    os.environ.setdefault("SPECKLE_VAE_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    from explorer import sources
    from explorer.atlas import build_atlas
    from explorer.projection import Projection, fit_projection
    from explorer.uploads import analyse, load_upload
    from frames import ImageFolder, Normalization
    from speckle.mmf import simulate_mmf
    from vae.checkpoint import load_checkpoint

    ck = load_checkpoint(sources.REPO / sources.DEMO_MODEL)
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    atlas = build_atlas(ck, ImageFolder(sources.ensure_simulated(n_atlas), 64, norm))
    umap_proj = fit_projection(atlas.mu, "umap", seed=None)  # the fitted reducer, in memory
    restored = Projection(umap_proj.coords, "umap", umap_proj.params)  # as after a restart
    img = simulate_mmf(1, seed=4242).images[0]
    buf = io.BytesIO()
    Image.fromarray((img / img.max() * 65535).astype(np.uint16)).save(buf, format="PNG")
    data = buf.getvalue()

    x = torch.from_numpy(load_upload("x.png", data, 64, norm).image)[None, None]

    def reference() -> None:
        with torch.inference_mode():
            ck.model.decode(ck.model.encode(x).mean)

    def ours(proj) -> None:
        u = load_upload("x.png", data, 64, norm)
        analyse([u], atlas, proj)

    t_ref = median_time(reference)
    out = []
    for label, proj in (("umap_in_memory", umap_proj), ("map_from_cache", restored)):
        t = median_time(lambda p=proj: ours(p))
        out.append(
            {
                "benchmark": f"upload_to_result[{label}]",
                "seconds": t,
                "encode_decode_seconds": t_ref,
                "ratio": t / t_ref,
            }
        )
    return out


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(
            f"{r['benchmark']}: {r['seconds'] * 1e3:.1f} ms vs encode+decode {r['encode_decode_seconds'] * 1e3:.1f} ms, "
            f"ratio {r['ratio']:.1f} (limit 3)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
