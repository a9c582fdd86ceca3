"""The alert-class networks: IICnet's body on the three stamps of a difference-image alert.

IICnet's multi-branch design (a 5x5 stem, a Receptive Field Block of 1x1 / 3x3 / dilated
branches, two CBAM attention blocks, global pooling; :mod:`engines.networks.iicnet`) reads three
co-registered images of one patch of sky; a difference alert carries exactly that: science,
template and difference stamps. The input here is those three stamps resampled to ZTF's pixel
scale (1.01 arcsec per pixel) on a 63 x 63 grid (``difference_stamps_arcsec_63`` in
:mod:`engines.preprocess`), so a Rubin stamp (0.2 arcsec per pixel) covers the same sky per pixel
as a ZTF one. The global average pool makes the body size-agnostic; only the output layer
differs from IICnet.

Three families share the body:

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
* ``alertclass_reference`` (3.x, :class:`ReferenceAlertClassNet`): 2.x plus the nearest source
  in ZTF's own reference image, as the packet gives it (:data:`REFERENCE_SOURCE_FIELDS`:
  ``distnr``, ``magnr``, ``sigmagnr``, ``chinr``, ``sharpnr``, from ZTF's PSF catalogue of the
  reference, the image the template stamp is cut from). A small perceptron on those five numbers
  adds its logits to the stamps' (weighted) for galaxy_host, hostless_or_faint and star. The
  second input is (flag, the five fields) in that order; the transforms (logarithms,
  standardisation fitted on the training alerts) are in the graph, so the engine gets the
  packet's raw values.
"""
from __future__ import annotations

import torch

from engines.networks.iicnet import IICNet

__all__ = ["ALERTCLASS_INPUT", "ALERTCLASS_LABELS", "AlertClassNet", "PACKET_CLASS_LABELS", "PacketAlertClassNet",
           "REFERENCE_SOURCE_FIELDS", "ReferenceAlertClassNet", "ReferenceSourceHead"]

ALERTCLASS_INPUT: tuple[int, int, int] = (3, 63, 63)
ALERTCLASS_LABELS: tuple[str, ...] = ("asteroid", "bogus", "galaxy_host", "hostless_or_faint", "star")
#: the 2.x classes; ``asteroid`` first: it comes from the packet, the others from the stamps
PACKET_CLASS_LABELS: tuple[str, ...] = ("asteroid", "galaxy_host", "hostless_or_faint", "star")
#: the 3.x network's reference-source inputs (ZTF candidate fields, the packet's raw values)
REFERENCE_SOURCE_FIELDS: tuple[str, ...] = ("distnr", "magnr", "sigmagnr", "chinr", "sharpnr")
#: which of them enter on a logarithmic scale (positive, spanning decades)
_LOG_FIELDS: tuple[bool, ...] = (True, False, True, True, False)


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


class ReferenceSourceHead(torch.nn.Module):
    """Logits for galaxy_host, hostless_or_faint, star from the five reference-source fields:
    logarithms where :data:`_LOG_FIELDS` says, standardised (``mean`` / ``std`` buffers, fitted
    on the training alerts and shipped in the weights), then ``5 -> hidden -> 3``."""

    log_mask: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        n = len(REFERENCE_SOURCE_FIELDS)
        self.register_buffer("log_mask", torch.tensor(_LOG_FIELDS, dtype=torch.float32))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(n, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3))

    def transform(self, fields: torch.Tensor) -> torch.Tensor:
        """(N, 5) raw fields -> (N, 5) standardised inputs of the perceptron."""
        fields = fields.float()
        logged = torch.log(fields.clamp(min=1e-3))
        mixed = self.log_mask * logged + (1 - self.log_mask) * fields
        return (mixed - self.mean) / self.std

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.transform(fields))


class ReferenceAlertClassNet(PacketAlertClassNet):
    """:class:`PacketAlertClassNet` plus :class:`ReferenceSourceHead`: ``forward(stamps,
    features)`` with ``features`` (N, 6) = (known-Solar-System flag, the five reference-source
    fields); the asteroid column is the flag, the others the softmax, divided by the temperature,
    of ``stamp_weight`` x the stamp logits plus the head's (the weight chosen on validation
    alerts, card ``[network_args]``)."""

    def __init__(self, dropout: float = 0.0, temperature: float = 1.0, stamp_weight: float = 1.0, hidden: int = 16) -> None:
        super().__init__(dropout=dropout, temperature=temperature)
        if not stamp_weight >= 0:
            raise ValueError(f"stamp_weight must be >= 0, not {stamp_weight}")
        self.stamp_weight = float(stamp_weight)
        self.reference = ReferenceSourceHead(hidden)

    def class_logits(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(N, 4) logits before the flag from the stamps and ``reference`` (N, 5) raw fields;
        asteroid: the stamps' own logit (the output ignores it)."""
        logits = self.stamp_logits(x)
        extra = self.reference(reference).to(logits.dtype)
        return torch.cat([logits[:, :1], self.stamp_weight * logits[:, 1:] + extra], dim=1)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        logits = self.class_logits(x, features[:, 1:1 + len(REFERENCE_SOURCE_FIELDS)])
        flag = features[:, :1].to(logits.dtype).clamp(0, 1)
        others = torch.softmax(logits[:, 1:].float() / self.temperature, dim=1).to(logits.dtype)
        return torch.cat([flag, (1 - flag) * others], dim=1)
