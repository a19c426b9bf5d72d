"""The reconstructors by name: what each reads and how it maps it to a pattern."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    reads: str  # "pixels" or "mu"
    kind: str  # a Readout kind ("linear", "dense", "mlp") or "tm"
    about: str

    @property
    def iterative(self) -> bool:
        return self.kind != "linear"


METHODS = {
    m.name: m
    for m in (
        Method("ridge-mu", "mu", "linear", "ridge read-out from the VAE's μ (linear baseline)"),
        Method("ridge-pixels", "pixels", "linear", "ridge read-out from the lit pixels"),
        Method("dense-pixels", "pixels", "dense", "one-hidden-layer dense net on the pixels"),
        Method("mlp-mu", "mu", "mlp", "MLP from the VAE's μ"),
        Method("tm", "pixels", "tm", "fitted transmission matrix, inverted per frame"),
    )
}
METHOD_NAMES = tuple(METHODS)


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; one of {', '.join(METHOD_NAMES)}") from None
