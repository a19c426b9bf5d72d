"""β schedules against posterior collapse. Each maps a step to (β_t, C_t); C_t is None except for
the capacity schedule, where the loss becomes γ·|KL − C_t|."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SCHEDULES = ("constant", "warmup", "cyclical", "capacity")


@dataclass(frozen=True)
class BetaSchedule:
    kind: str = "constant"
    beta: float = 1.0  # the target β, or γ for "capacity"
    warmup_steps: int = 1000  # "warmup": linear ramp 0 → β
    cycles: int = 4  # "cyclical": number of cycles over total_steps
    cycle_ratio: float = 0.5  # "cyclical": fraction of each cycle spent ramping
    capacity_max: float = 25.0  # "capacity": C_max in nats
    capacity_steps: int = 10000  # "capacity": steps to reach C_max
    total_steps: int = 10000

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0 < self.cycle_ratio <= 1:
            raise ValueError(f"cycle_ratio must be in (0, 1], got {self.cycle_ratio}")

    def at(self, step: int) -> tuple[float, float | None]:
        if self.kind == "warmup":
            return self.beta * min(1.0, step / max(1, self.warmup_steps)), None
        if self.kind == "cyclical":
            # Fu et al. 2019: in each cycle, ramp β linearly from 0 during the first R of the
            # cycle, then hold it, so the decoder regularly re-learns to use z.
            period = max(1, self.total_steps // max(1, self.cycles))
            phase = (step % period) / period
            return self.beta * min(1.0, phase / self.cycle_ratio), None
        if self.kind == "capacity":
            # Burgess et al. 2018: raise the KL target C linearly to C_max.
            c = self.capacity_max * min(1.0, step / max(1, self.capacity_steps))
            return self.beta, c
        return self.beta, None

    def to_dict(self) -> dict:
        return asdict(self)
