"""The module behind an exported checkpoint (vae.exported): two vetted `torch.export` programs
wrapped with vae.model.VAE's interface, and the shape checks run on them at import and at load."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from torch import nn

from common.checkpoint_files import CheckpointError
from vae.exported import CHECK_BATCHES, ExportedConfig
from vae.model import DiagonalGaussian
from vae.pt2_vetting import sanitize

MAX_PROGRAM_BYTES = 4 << 30


class ExportedVAE(nn.Module):
    """Two exported programs behind vae.model.VAE's interface: encode → DiagonalGaussian,
    decode, forward, check_input and `.config`. The programs have no training mode (their graph
    was traced in one), so train()/eval() only set the flag."""

    def __init__(self, config: ExportedConfig, encoder, decoder) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder  # x (B, C, H, W) → (μ, log σ²), each (B, dz)
        self.decoder = decoder  # z (B, dz) → x̂ (B, C, H, W)
        self.training = False

    def train(self, mode: bool = True) -> ExportedVAE:
        self.training = mode
        return self

    def check_input(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"expected input of shape (B, {want[0]}, {want[1]}, {want[2]}), "
                f"got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor):
        self.check_input(x)
        mean, logvar = self.encoder(x)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"expected z of shape (B, {self.config.latent_dim}), got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(self, x, sample: bool = True, generator=None, noise=None):
        posterior = self.encode(x)
        z = posterior.sample(generator, noise) if sample else posterior.mode()
        return self.decode(z), posterior


def read_program(
    path: Path, outputs: int, expected_sha256: str | None = None
) -> torch.export.ExportedProgram:
    """A vetted exported program from `path`, read once (what is hashed is what is loaded)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if path.stat().st_size > MAX_PROGRAM_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_PROGRAM_BYTES >> 30} GiB")
    data = path.read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CheckpointError(
            f"{path}: content hash does not match config.json (truncated or altered)"
        )
    clean = sanitize(path, data, outputs)
    try:
        return torch.export.load(io.BytesIO(clean))
    except Exception as e:  # noqa: BLE001 (the loader raises many kinds; one line for all)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a loadable exported program ({first[:160]})") from None


def traced_shapes(
    program: torch.export.ExportedProgram, path: Path, inputs: tuple, outputs: list[tuple]
) -> None:
    """The shapes the program was traced with, read from its graph without running it: one input
    of shape (B, *inputs) and outputs of shapes (B, *each), B the same symbol throughout (a
    dynamic batch). The check at every load; check_shapes runs the programs at import."""
    nodes = {n.name: n for n in program.graph.nodes}
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    got_in = [nodes[n].meta.get("val") for n in program.graph_signature.user_inputs]
    got_out = [a.meta.get("val") for a in out_node.args[0] if hasattr(a, "meta")]

    def shape(v) -> tuple:
        return tuple(v.shape) if isinstance(v, torch.Tensor) else ()

    batch = shape(got_in[0])[:1] if got_in else ()
    want = [(*batch, *inputs)] + [(*batch, *o) for o in outputs]
    have = [shape(v) for v in got_in + got_out]
    if not batch or isinstance(batch[0], int) or [str(s) for s in have] != [str(w) for w in want]:
        fmt = ", ".join(str(tuple(str(d) for d in h)) for h in have).replace("'", "")
        raise CheckpointError(
            f"{path}: traced with shapes {fmt}; expected a dynamic batch B and "
            + ", ".join(str(("B", *w[1:])).replace("'", "") for w in want)
        )


def check_shapes(model: ExportedVAE, encoder: Path, decoder: Path) -> None:
    """Run both programs on dummy batches of CHECK_BATCHES sizes; refuse a mismatch naming the
    file that produced it."""
    c = model.config
    for b in CHECK_BATCHES:
        x = torch.rand(b, c.in_channels, c.image_size, c.image_size)
        try:
            with torch.inference_mode():
                out = model.encoder(x)
        except Exception as e:  # noqa: BLE001 (any failure on a dummy batch is a refusal)
            raise _shape_error(encoder, f"on input {tuple(x.shape)}", e) from None
        shapes = [tuple(t.shape) for t in out] if isinstance(out, (tuple, list)) else [out]
        if shapes != [(b, c.latent_dim)] * 2:
            raise CheckpointError(
                f"{encoder}: on input {tuple(x.shape)} returned {shapes}, expected "
                f"(μ, log σ²) of shape {(b, c.latent_dim)} each"
            )
        z = torch.randn(b, c.latent_dim)
        try:
            with torch.inference_mode():
                y = model.decoder(z)
        except Exception as e:  # noqa: BLE001
            raise _shape_error(decoder, f"on z {tuple(z.shape)}", e) from None
        want = (b, c.in_channels, c.image_size, c.image_size)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise CheckpointError(
                f"{decoder}: on z {tuple(z.shape)} returned {got}, expected {want}"
            )


def _shape_error(path: Path, where: str, e: Exception) -> CheckpointError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return CheckpointError(f"{path}: fails {where} ({first[:160]})")
