"""The internal model every decoder produces and every later stage reads.

Pure data: no Kafka, Redis or engine imports. Arrays are numpy, float32, in the orientation
the FITS file stores them (row 0 = first row of the FITS data, i.e. the FITS y = 1 row).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from schemas.pickling import fast_pickle

__all__ = ["SURVEYS", "InputKind", "Stamp", "Alert", "Exposure", "Item", "ReadOnlyFields", "dedup_key"]

#: Every value of an input's ``survey``: the alert surveys, and ``exposure`` for our exposures.
SURVEYS: tuple[str, ...] = ("ztf", "rubin", "exposure")


class ReadOnlyFields(Mapping[str, Any]):
    """A survey record's fields, read-only, picklable (alerts cross process boundaries)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self._fields = dict(fields or {})

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyFields, (self._fields,))

    def __repr__(self) -> str:
        return f"ReadOnlyFields({len(self._fields)} fields)"


class InputKind(str, Enum):
    """What an input is; the engine registry says which models apply to each kind."""

    DIFFERENCE_ALERT = "difference_alert"   # science/template/difference stamps (ZTF, Rubin)
    RAW_EXPOSURE = "raw_exposure"           # raw multi-extension CCD frame (HST ACS/WFC, WFC3/UVIS)
    MULTIBAND_CUTOUT = "multiband_cutout"   # co-registered band cutouts (e.g. WISE W1/W2/W3)


@fast_pickle
@dataclass(frozen=True, slots=True)
class Stamp:
    """One image cutout as the survey sent it (not resized, not padded).

    ``header`` keeps the FITS header cards of the image HDU (keyword -> value).
    ``extra`` keeps other planes sent beside the image (Rubin: ``variance``, ``mask``, ``psf``).
    """

    data: np.ndarray
    header: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@fast_pickle
@dataclass(frozen=True, slots=True)
class Alert:
    """A difference-image alert from any survey, in one shape."""

    survey: str                      # "ztf" or "rubin"
    alert_id: int                    # ZTF candid, Rubin diaSourceId (alertId in older schemas)
    object_id: str                   # ZTF objectId, Rubin diaObjectId (as text)
    ra: float                        # degrees
    dec: float                       # degrees
    mjd: float                       # observation time, MJD (ZTF jd - 2400000.5; Rubin midpointMjdTai)
    band: str                        # "g", "r", "i", ... (ZTF fid 1/2/3 -> g/r/i)
    science: Stamp
    template: Stamp
    difference: Stamp
    schema_version: str              # e.g. "3.3", "4.02", "lsst.v7_4"
    #: The survey's own model outputs, e.g. {"rb": .., "drb": ..} or {"reliability": ..}.
    #: A comparison, never ground truth.
    survey_scores: Mapping[str, float] = field(default_factory=dict)
    #: Versions of those scores where the packet says (ZTF drbversion, Rubin reliabilityVersion).
    survey_score_versions: Mapping[str, str] = field(default_factory=dict)
    kind: InputKind = InputKind.DIFFERENCE_ALERT
    #: The candidate's detector pixel (x, y), 1-based as the survey gives it (ZTF xpos/ypos,
    #: Rubin diaSource x/y), and the detector's (rows, cols): together they say on which side
    #: a stamp cut at the detector edge is missing pixels. None where unknown.
    position_px: tuple[float, float] | None = None
    detector_shape: tuple[int, int] | None = None
    #: Every field of the survey's detection record as the packet carried it, read-only
    #: (ZTF: ``candidate``; Rubin: ``diaSource``). Models that read catalogue features (ACAI)
    #: take them from here; a field the packet's schema lacks is absent, never zero-filled.
    candidate: Mapping[str, Any] = field(default_factory=ReadOnlyFields)

    @property
    def key(self) -> str:
        return dedup_key(self.survey, self.alert_id)


@fast_pickle
@dataclass(frozen=True, slots=True)
class Exposure:
    """A raw exposure or multi-band cutout set (our ``exposure`` schema).

    ``images`` maps an extension or band name (``"SCI,1"``, ``"W1"``) to its float32 array;
    ``headers`` the same names to header cards. ``kind`` says which models apply.
    """

    exposure_id: str
    instrument: str                  # e.g. "ACS/WFC", "WFC3/UVIS", "WISE"
    filter: str
    exposure_time_s: float
    mjd: float
    kind: InputKind
    images: Mapping[str, np.ndarray]
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    object_id: str = ""
    ra: float | None = None
    dec: float | None = None
    schema_version: str = "1.0"
    survey: str = "exposure"

    @property
    def alert_id(self) -> str:
        return self.exposure_id

    @property
    def key(self) -> str:
        return dedup_key(self.survey, self.exposure_id)


#: What a decoder yields and a model scores: a difference alert or a raw exposure.
Item = Alert | Exposure


def dedup_key(survey: str, alert_id: int | str) -> str:
    """The identity of an input for deduplication: survey + its own id."""
    return f"{survey}:{alert_id}"
