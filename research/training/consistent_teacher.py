"""Consistent teaching: braai scores the very view the real/bogus CNN trains on (issue #25 item 2).

The distillation of 2.1.0 gave each training alert braai's score of its *unturned* stamps,
then turned (and shifted) the network's input: the target stayed the original view's, though
braai is not invariant to a turn (its row-wise L2 normalises rows, which a quarter turn makes
columns). A teacher that can score any input allows what Beyer et al. (2022, "Knowledge
distillation: A good teacher is patient and consistent", CVPR) call *consistent teaching*
and *function matching*: teacher and network see the same view, the same turn and, with
mixup, the same convex mix of two alerts, so the network learns braai's function around the
training alerts rather than its value at 1,437 points.

One view serves both networks exactly. The teacher's input is braai's own (3, 63, 63) row-wise
L2 triplet (``braai_rownorm_63``); the network's is that triplet resampled to 69 x 69
(``difference_stamps_rownorm_69``, 2.1.0) or centred in a 69 x 69 frame of zeros
(``difference_stamps_rownorm_pad69``), see :func:`engines.preprocess.difference_alert_batch_rownorm`.
So the view is made on the 63 px triplet, braai scores it, and the network gets the view
through the same map its preprocessing applies: no second augmentation to keep in step.

Validation is unchanged (braai's score of the clean validation alerts, from the pool's teacher
file), so the lowest validation loss still chooses the kept epoch and compares variants.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.training.train import dihedral_turn
from engines.training.ztf_files import TrainingDataError
from research.training.pool_realbogus import shift_augment

__all__ = ["TEACHER_PREPROCESSING", "STUDENT_VIEWS", "TURN_NAMES", "ConsistentTeacher", "load_braai", "student_view",
           "turn", "turn_sensitivity"]

#: braai d6_m7's own input (engines.preprocess key): the teacher's side of every view
TEACHER_PREPROCESSING = "braai_rownorm_63"


def _resample_69(x: torch.Tensor) -> torch.Tensor:
    from engines.preprocess import resample

    return resample(x, 69)


def _pad_69(x: torch.Tensor) -> torch.Tensor:
    pad = 69 - x.shape[-1]
    return F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))


#: the network's preprocessing -> the map from braai's 63 px triplet to the network's input
STUDENT_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "difference_stamps_rownorm_69": _resample_69,
    "difference_stamps_rownorm_pad69": _pad_69,
}


def student_view(preprocessing: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map from braai's triplet to the network's input under ``preprocessing``."""
    try:
        return STUDENT_VIEWS[preprocessing]
    except KeyError:
        raise TrainingDataError(f"consistent teaching needs an input made from braai's triplet "
                                f"({', '.join(STUDENT_VIEWS)}), not {preprocessing!r}") from None


def load_braai() -> nn.Module:
    """braai d6_m7 (ZTF's drb model) from the shipped card, in eval mode: (N, 3, 63, 63) -> (N, 1)."""
    from engines.cards import load_card
    from engines.registry import CARDS_DIR, load_network

    network = load_network(load_card(CARDS_DIR / "braai.toml"))
    return network.eval()


@dataclass
class ConsistentTeacher:
    """``train_network``'s ``training_batch``: (the network's inputs, braai's soft targets) of one
    view per training row.

    ``triplets``: braai's (N, 3, 63, 63) inputs of the training rows, in ``train_x`` order.
    Per example: one of the 8 turns of the square, a shift of up to ``max_shift`` px (zero
    fill, braai's pad value), then with ``mixup_alpha`` > 0 a mix ``l x + (1 - l) x'`` with
    another example of the batch, ``l ~ Beta(alpha, alpha)``. braai scores the result; the
    target is (1 - s, s)."""

    teacher: nn.Module
    triplets: np.ndarray
    to_student: Callable[[torch.Tensor], torch.Tensor]
    mixup_alpha: float = 0.0
    max_shift: int = 0
    #: training views braai scored (a count for the training record)
    scored: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.triplets.ndim != 4 or self.triplets.shape[1:] != (3, 63, 63):
            raise TrainingDataError(f"teacher triplets must be (N, 3, 63, 63), got {self.triplets.shape}")
        if self.mixup_alpha < 0 or self.max_shift < 0:
            raise TrainingDataError("mixup_alpha and max_shift must be >= 0")
        self._turn_and_shift = shift_augment(self.max_shift)

    @property
    def examples(self) -> int:
        return int(self.triplets.shape[0])

    @property
    def description(self) -> dict[str, object]:
        return {"targets": "braai d6_m7 scores each training view (consistent teaching)",
                "turns": "8 dihedral", "max_shift_px": self.max_shift, "mixup_alpha": self.mixup_alpha}

    def view(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """The batch's views on braai's 63 px grid."""
        x = self._turn_and_shift(torch.from_numpy(np.ascontiguousarray(self.triplets[idx])), rng)
        if self.mixup_alpha > 0 and len(x) > 1:
            lam = torch.from_numpy(rng.beta(self.mixup_alpha, self.mixup_alpha, len(x)).astype(np.float32))
            other = torch.from_numpy(rng.permutation(len(x)))
            x = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[other]
        return x

    def __call__(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.view(idx, rng)
        with torch.no_grad():
            s = self.teacher(x).reshape(-1).clamp(0.0, 1.0)
        self.scored += len(x)
        return self.to_student(x), torch.stack([1.0 - s, s], dim=1)


#: the square's 8 turns, in :func:`engines.training.train.dihedral_augment`'s order
TURN_NAMES = ("none", "rot90", "rot180", "rot270", "flip", "rot90+flip", "rot180+flip", "rot270+flip")


#: (N, C, H, W) turned by the k-th of the 8 turns (the one :func:`engines.training.train.dihedral_augment` draws)
turn = dihedral_turn


def turn_sensitivity(teacher: nn.Module, triplets: np.ndarray, batch: int = 256) -> dict[str, dict[str, float]]:
    """How far each turn moves the teacher's score: mean |s(turned) - s| and the share of alerts
    whose score crosses 0.5. The targets 2.1.0 gave every turn (the unturned score) are off by this."""
    base: list[torch.Tensor] = []
    moved: dict[str, list[torch.Tensor]] = {name: [] for name in TURN_NAMES}
    with torch.no_grad():
        for start in range(0, len(triplets), batch):
            x = torch.from_numpy(np.ascontiguousarray(triplets[start:start + batch]))
            s = teacher(x).reshape(-1)
            base.append(s)
            for k, name in enumerate(TURN_NAMES):
                moved[name].append(teacher(turn(x, k)).reshape(-1))
    s0 = torch.cat(base)
    out = {}
    for name, parts in moved.items():
        s = torch.cat(parts)
        out[name] = {"mean_abs_change": round(float((s - s0).abs().mean()), 4),
                     "crosses_0_5": round(float(((s >= 0.5) != (s0 >= 0.5)).float().mean()), 4)}
    return out
