"""Optimizer steps that a non-finite loss or gradient cannot poison.

Why: with torch 2.14.1 (oneDNN 3.12) on an AMD EPYC with AVX512-bf16 and no AMX, the bf16
weight gradient of a Conv3d (r3d_tiny's 16→16 3x3x3 conv on (128, 16, 2, 12, 12)) came back
inf/NaN in 88 of 400 calls for finite inputs, and not on a rerun of the same input (measured
2026-12-04; fp32, or oneDNN disabled: none). One such step turns every weight NaN through Adam's
moments, and a run used to go on to write a NaN encoder. An update whose loss or gradients are
not all finite is therefore skipped, and the BatchNorm running statistics its forward pass
moved are put back, so the weights stay those of the last good step. A run that skips more
than a small share of its steps stops with the flag to change.
"""

from __future__ import annotations

import warnings

import torch

from echoclr import distributed
from echoclr.errors import UserError


class StepGuard:
    """Skips the update of a step with a non-finite loss or gradient (see the module docstring).

    Use: ``guard.before_forward()``, forward, backward, then ``guard.step(optimizer, loss)``
    instead of ``optimizer.step()``. Under ``torch.distributed`` every process skips the same
    steps (the finite flag is reduced over processes), so DDP replicas stay identical.

    Args:
        model: the module trained (its buffers are restored after a skipped step).
        what: the run named in the error, e.g. "pretrain RUN".
        precision: the resolved precision; bf16 turns the error's hint to --precision fp32.
        max_share: the largest share of skipped steps tolerated ...
        min_skipped: ... once at least this many were skipped (a stray step is harmless).
    """

    def __init__(self, model: torch.nn.Module, *, what: str, precision: str,
                 max_share: float = 0.05, min_skipped: int = 5):
        self.model, self.what, self.precision = model, what, precision
        self.max_share, self.min_skipped = max_share, min_skipped
        self.steps = self.skipped = 0
        self._buffers: list[torch.Tensor] | None = None

    def before_forward(self) -> None:
        """Remember the buffers (BatchNorm running mean/var, counters) the forward will move."""
        self._buffers = [b.detach().clone() for b in self.model.buffers()]

    def finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss and every gradient are finite, on every process."""
        # One flag, read once: a bool() per parameter would be a device sync each on a GPU.
        flags = [torch.isfinite(loss).all()] + [torch.isfinite(p.grad).all()
                                                for p in self.model.parameters()
                                                if p.grad is not None]
        ok = bool(torch.stack(flags).all())
        return distributed.all_reduce_mean(float(ok)) == 1.0

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
        """``optimizer.step()`` when loss and gradients are finite; else skip it and restore the
        buffers. Returns whether the update was taken.

        Raises:
            UserError: more than ``max_share`` of the steps so far (and ``min_skipped``) skipped.
        """
        self.steps += 1
        if self.finite(loss):
            optimizer.step()
            return True
        self.skipped += 1
        if self._buffers is not None:
            with torch.no_grad():
                for buf, saved in zip(self.model.buffers(), self._buffers):
                    buf.copy_(saved)
        optimizer.zero_grad(set_to_none=True)
        if self.skipped >= self.min_skipped and self.skipped > self.max_share * self.steps:
            raise UserError(self.message())
        return False

    def message(self) -> str:
        share = self.skipped / max(1, self.steps)
        fix = ("bf16 is the likely cause (oneDNN's bf16 Conv3d gradient is unreliable on some "
               "CPUs): rerun with --precision fp32" if self.precision == "bf16"
               else "the training diverged: lower --lr")
        return (f"{self.what}: the loss or gradients were not finite in {self.skipped} of "
                f"{self.steps} steps ({share:.0%}; those updates were skipped); {fix}")

    def state_dict(self) -> dict[str, int]:
        """The counters, for a checkpoint: a resumed run's ``skipped_steps`` and stop threshold
        then count the whole run, not only the part since the resume."""
        return {"steps": self.steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int] | None) -> None:
        """Restore :meth:`state_dict`'s counters (None, from an older checkpoint: keep zeros)."""
        if state is not None:
            self.steps, self.skipped = int(state["steps"]), int(state["skipped"])

    def warn(self) -> None:
        """Warn, naming the run, when any step was skipped."""
        if self.skipped:
            warnings.warn(f"{self.what}: {self.skipped} of {self.steps} steps had a non-finite "
                          f"loss or gradient and were skipped (precision {self.precision})",
                          stacklevel=3)
