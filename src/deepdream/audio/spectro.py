"""Sound <-> time-frequency picture: STFT, log magnitude in [0, 1] as an RGB image, the dream turned back
into per-bin gains, and resynthesis with the original phase or Griffin-Lim."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

EPS = 1e-10


@dataclass(frozen=True)
class Spectrogram:
    """STFT geometry: a Hann window of about 50 ms (a power of two) and a hop of a quarter window."""

    n_fft: int
    hop: int

    @classmethod
    def for_rate(cls, rate: int) -> "Spectrogram":
        n_fft = 2 ** round(math.log2(rate * 0.05))
        return cls(n_fft, n_fft // 4)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def columns(self, samples: int) -> int:
        return samples // self.hop + 1

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """C x n samples -> C x F x T complex; zero padding at the ends (silence before and after)."""
        window = torch.hann_window(self.n_fft, device=x.device)
        return torch.stft(x, self.n_fft, self.hop, window=window, center=True, pad_mode="constant", return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """C x F x T complex -> C x length samples (exact inverse of `stft` for an unchanged spectrum)."""
        window = torch.hann_window(self.n_fft, device=spec.device)
        return torch.istft(spec, self.n_fft, self.hop, window=window, center=True, length=length)


def decibels(magnitude: torch.Tensor) -> torch.Tensor:
    return 20 * torch.log10(magnitude.clamp_min(EPS))


@dataclass(frozen=True)
class Scale:
    """The log-magnitude window mapped to [0, 1]: `top` dB (the file's loudest bin) is 1, `top - range` is 0."""

    top: float
    range: float = 80.0

    @property
    def floor(self) -> float:
        return self.top - self.range

    def picture(self, db: torch.Tensor) -> torch.Tensor:
        """F x T decibels -> 1 x 3 x F x T grey RGB, low frequencies at the bottom as in every spectrogram plot."""
        grey = ((db - self.floor) / self.range).clamp(0, 1).flip(0)
        return grey[None, None].expand(1, 3, *grey.shape).contiguous()

    def levels(
        self, db: torch.Tensor, dreamed: torch.Tensor, lit: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(decibels per bin, lit) for a dreamed picture (1 x 3 x F x T) of the window whose levels are `db`.

        Bins inside the window move by the dream's change; bins below the floor (black in the picture) keep
        their level unless the dream lit them up (`lit`, found here unless given): then they take the
        dreamed level. Differentiable in `dreamed`."""
        level = dreamed.mean(1)[0].flip(0) * self.range + self.floor  # F x T dB the dream asks for
        source = ((db - self.floor) / self.range).clamp(0, 1) * self.range + self.floor
        if lit is None:
            lit = (db < self.floor) & (level > self.floor + self.range / 512)
        return torch.where(db >= self.floor, db + level - source, torch.where(lit, level, db)), lit


def original_phase(
    phasors: torch.Tensor, magnitude: torch.Tensor, geometry: Spectrogram, length: int, iterations: int
) -> torch.Tensor:
    """The input's phase, kept: where the dream changed nothing, the output is the input."""
    return phasors


def griffin_lim(
    phasors: torch.Tensor,
    magnitude: torch.Tensor,
    geometry: Spectrogram,
    length: int,
    iterations: int,
    momentum: float = 0.99,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from the given phase: the phase follows the new magnitudes
    until the STFT is consistent."""
    previous = torch.zeros_like(phasors)
    for _ in range(iterations):
        rebuilt = geometry.stft(geometry.istft(magnitude * phasors, length))
        phasors = rebuilt - previous * (momentum / (1 + momentum))
        phasors = phasors / phasors.abs().clamp_min(EPS)
        previous = rebuilt
    return phasors


# f(unit phasors to start from, new magnitudes, geometry, length, iterations) -> the unit phasors to resynthesise with
PhaseRule = Callable[[torch.Tensor, torch.Tensor, Spectrogram, int, int], torch.Tensor]
PHASES: dict[str, PhaseRule] = {"original": original_phase, "griffinlim": griffin_lim}
