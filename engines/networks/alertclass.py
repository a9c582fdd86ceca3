"""The alert-class networks: IICnet's body on the three stamps of a difference-image alert.

IICnet's multi-branch design (a 5x5 stem, a Receptive Field Block of 1x1 / 3x3 / dilated
branches, two CBAM attention blocks, global pooling; :mod:`engines.networks.iicnet`) reads three
co-registered images of one patch of sky; a difference alert carries exactly that: science,
template and difference stamps. The input here is those three stamps resampled to ZTF's pixel
scale (1.01 arcsec per pixel) on a 63 x 63 grid (``difference_stamps_arcsec_63`` in
:mod:`engines.preprocess`), so a Rubin stamp (0.2 arcsec per pixel) covers the same sky per pixel
as a ZTF one. The global average pool makes the body size-agnostic; only the output layer
differs from IICnet.

Two families share the body:

* ``alertclass`` (1.x, :class:`AlertClassNet`): stamps only, one logit per class of
  :data:`ALERTCLASS_LABELS` (asteroid, bogus, galaxy_host, hostless_or_faint, star).
* ``alertclass_packet`` (2.x, :class:`PacketAlertClassNet`): classes
  :data:`PACKET_CLASS_LABELS`. ``asteroid`` is the packet's catalogue fact, not a stamp
  inference: the second input is the known-Solar-System flag (1 when the alert lies within 5"
  of a known object, ``engines.preprocess.known_solar_system``); a flagged alert is
  ``asteroid`` with probability 1, an unflagged one gets the stamps' softmax over the other
  three classes (its asteroid probability is 0), divided by a temperature fitted on validation
  alerts (card ``[network_args] temperature``). The body keeps a stamp-only asteroid logit
  (trained, reported in the card as the stamp-only asteroid figure) that the output ignores.
"""
from __future__ import annotations

import torch

from engines.networks.iicnet import IICNet

__all__ = ["ALERTCLASS_INPUT", "ALERTCLASS_LABELS", "AlertClassNet", "PACKET_CLASS_LABELS", "PacketAlertClassNet"]

ALERTCLASS_INPUT: tuple[int, int, int] = (3, 63, 63)
ALERTCLASS_LABELS: tuple[str, ...] = ("asteroid", "bogus", "galaxy_host", "hostless_or_faint", "star")
#: the 2.x classes; ``asteroid`` first: it comes from the packet, the others from the stamps
PACKET_CLASS_LABELS: tuple[str, ...] = ("asteroid", "galaxy_host", "hostless_or_faint", "star")


class AlertClassNet(IICNet):
    """IICnet with one output per alert class (:data:`ALERTCLASS_LABELS` unless told otherwise)."""

    def __init__(self, dropout: float = 0.0, num_classes: int = len(ALERTCLASS_LABELS)) -> None:
        super().__init__(dropout=dropout, num_classes=num_classes)


class PacketAlertClassNet(IICNet):
    """IICnet's body with one logit per class of :data:`PACKET_CLASS_LABELS`; ``forward(stamps,
    known_solar_system)`` returns probabilities (the asteroid column from the flag)."""

    def __init__(self, dropout: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__(dropout=dropout, num_classes=len(PACKET_CLASS_LABELS))
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        self.temperature = float(temperature)   # divides the stamp logits (calibration), the card's network_args

    def stamp_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4) logits from the stamps alone (asteroid included)."""
        return super().forward(x)

    def forward(self, x: torch.Tensor, known_solar_system: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        logits = self.stamp_logits(x)
        flag = known_solar_system[:, :1].to(logits.dtype).clamp(0, 1)
        others = torch.softmax(logits[:, 1:].float() / self.temperature, dim=1).to(logits.dtype)
        return torch.cat([flag, (1 - flag) * others], dim=1)
