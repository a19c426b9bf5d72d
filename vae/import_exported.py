"""Import a VAE of any architecture as two torch.export programs, encoder x → (μ, log σ²) and
decoder z → x, into a checkpoint of the "exported" kind that every page and command opens.

    python -m vae.import_exported --encoder enc.pt2 --decoder dec.pt2 --image-size 64 \\
        --latent-dim 32 --out models/mine

Each program is vetted before torch.export.load reads it (vae.pt2_vetting: no pickles, no
compiled code, only ATen operators), then both run on dummy batches of 1 and 3; the checkpoint
holds copies of the two files. docs/checkpoints.md shows how to export a model in ten lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.checkpoint_files import CheckpointError
from common.cli import summary
from vae.checkpoint import FORMAT, FORMAT_VERSION
from vae.exported import DECODER, ENCODER, PROGRAMS, ExportedConfig, save_exported, traced
from vae.exported_model import ExportedVAE, check_shapes, read_program, traced_shapes
from vae.imports import add_training_options, source_record, training_meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vae.import_exported", description=summary(__doc__))
    p.add_argument("--encoder", required=True, type=Path, help="the encoder's .pt2 file")
    p.add_argument("--decoder", required=True, type=Path, help="the decoder's .pt2 file")
    p.add_argument("--image-size", required=True, type=int, help="side of the square input")
    p.add_argument("--latent-dim", required=True, type=int, help="size of the code z")
    p.add_argument("--in-channels", type=int, default=1, help="channels of the input")
    add_training_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = ExportedConfig(args.image_size, args.latent_dim, args.in_channels)
        encoder = read_program(args.encoder, PROGRAMS[ENCODER])
        decoder = read_program(args.decoder, PROGRAMS[DECODER])
        model = ExportedVAE(config, encoder.module(), decoder.module())
        check_shapes(model, args.encoder, args.decoder)  # runs them: batches of 1 and 3
        for program, path, (inputs, outputs) in zip(
            (encoder, decoder), (args.encoder, args.decoder), traced(config), strict=True
        ):
            traced_shapes(program, path, inputs, outputs)  # what every load will check
        meta = training_meta(args, config.image_size, "vae.import_exported", argv)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta["import"] = {
        "kind": "torch.export",
        "source": {ENCODER: source_record(args.encoder), DECODER: source_record(args.decoder)},
    }
    digest = save_exported(
        args.out, args.encoder, args.decoder, config, meta, FORMAT, FORMAT_VERSION
    )
    print(f"wrote {args.out} (id {digest[:12]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
