"""The `python -m speckle mmf` options of the modal fibre and the camera, and the simulator's
keyword arguments they give (`speckle.modal_fibre.ModalFibre`, `speckle.camera.Camera`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from speckle.camera import camera_from_options
from speckle.modal_fibre import FIBRES, POLARIZATIONS, ModalFibre
from speckle.modes import PROFILES, SOLVERS

DEFAULT = ModalFibre()


def add_fibre_options(p: argparse.ArgumentParser, pair: Callable[[str], Any]) -> None:
    """--fibre and the modal fibre's options, and the camera's, on the mmf parser. `pair` parses
    'V' or 'LO:HI'."""
    g = p.add_argument_group("modal fibre (--fibre modes; see docs/simulator.md)")
    g.add_argument(
        "--fibre",
        choices=FIBRES,
        default="gaussian",
        help="gaussian: a random Gaussian transmission matrix; modes: a fibre's guided modes "
        "(pyMMF), with the options below",
    )
    g.add_argument("--profile", choices=PROFILES, default=DEFAULT.profile, help="index profile")
    g.add_argument("--core-radius", type=float, default=DEFAULT.core_radius, help="µm")
    g.add_argument("--na", type=float, default=DEFAULT.na, help="numerical aperture")
    g.add_argument("--wavelength", type=float, default=DEFAULT.wavelength, help="µm")
    g.add_argument("--length", type=float, default=DEFAULT.length, help="fibre length, m")
    g.add_argument("--grid", type=int, default=None, help="mode solver grid (default: --size)")
    g.add_argument("--solver", choices=SOLVERS, default=DEFAULT.solver, help="pyMMF solver")
    g.add_argument(
        "--coupling-within",
        type=float,
        default=DEFAULT.coupling_within,
        help="mode coupling within each mode group: 0 none .. 1 full",
    )
    g.add_argument(
        "--coupling-across",
        type=float,
        default=DEFAULT.coupling_across,
        help="mode coupling across all modes: 0 none .. 1 full (the Gaussian-TM limit)",
    )
    g.add_argument(
        "--polarization",
        choices=POLARIZATIONS,
        default=DEFAULT.polarization,
        help="both: two polarizations, unpolarized detection",
    )
    g.add_argument("--temperature-range", type=pair, default=None, help="ΔT in K, V or LO:HI")
    g.add_argument("--length-strain", type=pair, default=None, help="ΔL/L, V or LO:HI")
    g.add_argument("--wavelength-range", type=pair, default=None, help="Δλ in nm, V or LO:HI")
    g.add_argument(
        "--conformations",
        type=int,
        default=None,
        metavar="M",
        help="M random bend and twist states (curvatures from --bend, default 0:1 /m)",
    )
    g.add_argument("--twist", type=float, default=0.0, help="max |twist| of a conformation, deg")
    g.add_argument(
        "--drift",
        type=float,
        default=0.0,
        help="random-walk step per frame as a fraction of each range (0: independent frames)",
    )
    c = p.add_argument_group("camera (both fibres)")
    c.add_argument(
        "--photons",
        type=float,
        default=None,
        help="photo-electrons per core pixel with the full SLM on: adds the camera model "
        "(default: no camera)",
    )
    c.add_argument("--read-noise", type=float, default=0.0, help="read noise, e- rms")
    c.add_argument("--bit-depth", type=int, default=None, help="ADC bits (default: none)")
    c.add_argument("--full-well", type=float, default=None, help="full well, e- (default: none)")


def fibre_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """simulate_mmf's fibre, modal, camera and bend arguments from the parsed options. --bend is
    the Gaussian fibre's μ, or the modal fibre's curvature range in 1/m."""
    camera = camera_from_options(args.photons, args.read_noise, args.bit_depth, args.full_well)
    if args.fibre == "gaussian":
        if isinstance(args.bend, tuple):
            raise ValueError("--bend of the Gaussian fibre is one μ in [0, 1], not a range")
        return {"fibre": "gaussian", "camera": camera, "bend": args.bend}
    modal = ModalFibre(
        profile=args.profile,
        core_radius=args.core_radius,
        na=args.na,
        wavelength=args.wavelength,
        length=args.length,
        grid=args.grid,
        solver=args.solver,
        coupling_within=args.coupling_within,
        coupling_across=args.coupling_across,
        polarization=args.polarization,
        temperature=args.temperature_range,
        strain=args.length_strain,
        detuning=args.wavelength_range,
        bend=args.bend,
        conformations=args.conformations,
        twist=args.twist,
        drift=args.drift,
    )
    return {"fibre": "modes", "modal": modal, "camera": camera, "bend": None}
