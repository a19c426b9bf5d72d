"""VAEs trained outside this repository, for the import tests: two plain scripts with their own
module classes that import nothing of ours, run in a separate, isolated Python (`-I`, from a
temporary folder), and helpers that import what they write.

- NOTEBOOK_SCRIPT: the demo (or, given "paper", the paper) preset's architecture written again
  under other names (what a notebook holds), trained a few steps (the paper one left as
  initialised), saved with torch.save(model.state_dict()) beside a check
  batch (inputs.npy; outputs.npz with mu and recon from its own forward pass).
- MLP_SCRIPT: a plain MLP VAE, trained a few steps, exported encoder and decoder with
  torch.export (dynamic batch) and torch.export.save.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MLP_SIZE, MLP_DZ = 32, 16

NOTEBOOK_SCRIPT = r"""
import math, sys
import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
PRESET = sys.argv[2] if len(sys.argv) > 2 else "demo"
CH, SIZE, DZ = {"demo": ((16, 32, 64, 64), 64, 512), "paper": ((64, 128, 256, 512), 96, 512)}[PRESET]


def gn(c):
    return nn.GroupNorm(math.gcd(8, c), c)


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.Sequential(gn(c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1), gn(c),
                                    nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.layers(x)


class NotebookVAE(nn.Module):
    def __init__(self):
        super().__init__()
        down, prev = [], 1
        for c in CH:
            down += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.SiLU(), Res(c)]
            prev = c
        self.down = nn.Sequential(*down)
        flat = CH[-1] * (SIZE // 16) ** 2
        self.fc_mu, self.fc_var = nn.Linear(flat, DZ), nn.Linear(flat, DZ)
        self.fc_up = nn.Linear(DZ, flat)
        up, rev = [], list(reversed(CH))
        for i, c in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            up += [Res(c), nn.ConvTranspose2d(c, nxt, 3, stride=2, padding=1, output_padding=1),
                   nn.SiLU()]
        up += [nn.Conv2d(rev[-1], 1, 3, padding=1), nn.Sigmoid()]
        self.up = nn.Sequential(*up)

    def encode(self, x):
        h = self.down(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)

    def decode(self, z):
        return self.up(self.fc_up(z).view(len(z), CH[-1], SIZE // 16, SIZE // 16))


model = NotebookVAE()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.rand(8, 1, SIZE, SIZE)
for _ in range(2 if PRESET == "demo" else 0):  # the paper model: as initialised
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    loss = ((model.decode(z) - x) ** 2).sum() - 0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
    opt.zero_grad(); loss.backward(); opt.step()
model.eval()
out = sys.argv[1]
torch.save(model.state_dict(), f"{out}/notebook.pt")
check = torch.rand(4, 1, SIZE, SIZE)
with torch.no_grad():
    mu, _ = model.encode(check)
    recon = model.decode(mu)
np.save(f"{out}/inputs.npy", check.numpy())
np.savez(f"{out}/outputs.npz", mu=mu.numpy(), recon=recon.numpy())
"""

MLP_SCRIPT = rf"""
import sys
import torch
from torch import nn

torch.manual_seed(0)
SIZE, DZ = {MLP_SIZE}, {MLP_DZ}


class MLPVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 128), nn.Tanh())
        self.mu, self.logvar = nn.Linear(128, DZ), nn.Linear(128, DZ)
        self.head = nn.Sequential(nn.Linear(DZ, 128), nn.Tanh(), nn.Linear(128, SIZE * SIZE),
                                  nn.Sigmoid())

    def encode(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        return self.head(z).view(-1, 1, SIZE, SIZE)


class Enc(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.encode(x)


class Dec(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z)


vae = MLPVAE()
opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
x = torch.rand(16, 1, SIZE, SIZE)
for _ in range(5):
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    loss = ((vae.decode(z) - x) ** 2).sum() - 0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
    opt.zero_grad(); loss.backward(); opt.step()
vae.eval()
batch = torch.export.Dim("batch")
enc = torch.export.export(Enc(vae), (torch.rand(2, 1, SIZE, SIZE),), dynamic_shapes={{"x": {{0: batch}}}})
dec = torch.export.export(Dec(vae), (torch.randn(2, DZ),), dynamic_shapes={{"z": {{0: batch}}}})
torch.export.save(enc, sys.argv[1] + "/encoder.pt2")
torch.export.save(dec, sys.argv[1] + "/decoder.pt2")
"""


def run_outside(script: str, folder: Path, *args: str) -> None:
    """Run `script` in an isolated Python from `folder` (nothing of this repository importable),
    writing its files there."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_elsewhere.py"
    path.write_text(script)
    p = subprocess.run(
        [sys.executable, "-I", str(path), str(folder), *args],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]


def exported_mlp(folder: Path, out: Path) -> Path:
    """The MLP VAE trained and exported outside, imported as an exported checkpoint at `out`."""
    # Lazy: the import command loads torch; the module is also read by tests that do not.
    from vae.import_exported import main

    run_outside(MLP_SCRIPT, folder)
    argv = ["--encoder", str(folder / "encoder.pt2"), "--decoder", str(folder / "decoder.pt2")]
    argv += ["--image-size", str(MLP_SIZE), "--latent-dim", str(MLP_DZ), "--out", str(out)]
    assert main(argv) == 0
    return out
