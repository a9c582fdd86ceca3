"""The alert-class network: IICnet's body on the three stamps of a difference-image alert.

IICnet's multi-branch design (a 5x5 stem, a Receptive Field Block of 1x1 / 3x3 / dilated
branches, two CBAM attention blocks, global pooling; :mod:`engines.networks.iicnet`) reads three
co-registered images of one patch of sky; a difference alert carries exactly that: science,
template and difference stamps. The input here is those three stamps resampled to ZTF's pixel
scale (1.01 arcsec per pixel) on a 63 x 63 grid (``difference_stamps_arcsec_63`` in
:mod:`engines.preprocess`), so a Rubin stamp (0.2 arcsec per pixel) covers the same sky per pixel
as a ZTF one. The global average pool makes the body size-agnostic; only the output layer
differs from IICnet (one logit per class below).

Classes (why these, from the training pool's label counts, in the card): ``asteroid``
(a known Solar-System object within 5 arcsec), ``bogus`` (ZTF's braai score below 0.5),
``galaxy_host`` (a PS1 extended source within 5 arcsec), ``hostless_or_faint`` (no PS1 source
within 5 arcsec), ``star`` (a PS1 point source within 1.5 arcsec).
"""
from __future__ import annotations

from engines.networks.iicnet import IICNet

__all__ = ["ALERTCLASS_INPUT", "ALERTCLASS_LABELS", "AlertClassNet"]

ALERTCLASS_INPUT: tuple[int, int, int] = (3, 63, 63)
ALERTCLASS_LABELS: tuple[str, ...] = ("asteroid", "bogus", "galaxy_host", "hostless_or_faint", "star")


class AlertClassNet(IICNet):
    """IICnet with one output per alert class (:data:`ALERTCLASS_LABELS` unless told otherwise)."""

    def __init__(self, dropout: float = 0.0, num_classes: int = len(ALERTCLASS_LABELS)) -> None:
        super().__init__(dropout=dropout, num_classes=num_classes)
