"""Where a subscriber's kept records go: a live terminal table, JSON lines, CSV, Parquet, Avro, PNGs.

Every writer has ``write(record)`` and ``close()`` and is a context manager. File formats:

* ``.jsonl``: one :meth:`ClassifiedRecord.as_dict` object per line (maps and the model list
  kept as JSON objects). Replayable: ``survey-classifier replay dump.jsonl --topic T``.
* ``.avro``: an Avro container in the classified record's latest schema. Replayable too.
* ``.csv``: one row per record, flat: scalar fields as columns, plus ``top_class``/``top_prob``,
  one ``class_scores.<label>`` column per label our models output (read from the model cards),
  one ``survey_scores.<name>`` column per survey score (drb, rb, reliability), any other label
  as ``label=value`` pairs in ``class_scores.other``, and ``models`` as ``name:version`` pairs
  (``*`` after an untrained one). Header names carry units: ``ra [deg]``, ``mjd [d (MJD, TAI)]``.
* ``.parquet``: typed columns (maps as ``map<string, double>``, models as a list of structs),
  written in row groups of :data:`PARQUET_ROW_GROUP` records (pyarrow); each field's metadata
  holds its ``unit`` and ``doc`` (from the Avro schema).

PNG triplets (:func:`render_triplet`) draw the science, template and difference cutouts of the
original alert with the record's scores in the title (matplotlib, Agg backend).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np

from schemas.quality import QUALITY_FIELDS
from stream.subscribe.reader import ClassifiedRecord
from stream.subscribe.units import FIELD_UNITS, SURVEY_SCORE_NAMES, csv_header_name, field_docs

__all__ = [
    "OutputError",
    "RecordWriter",
    "TableWriter",
    "JsonlWriter",
    "CsvWriter",
    "ParquetWriter",
    "AvroWriter",
    "open_writer",
    "render_triplet",
    "png_name",
    "csv_safe",
    "FILE_FORMATS",
    "PARQUET_ROW_GROUP",
    "CSV_COLUMNS",
]

PARQUET_ROW_GROUP = 1000
FILE_FORMATS = (".jsonl", ".csv", ".parquet", ".avro")
_SCALARS = (
    "survey", "kind", "alert_id", "object_id", "ra", "dec", "mjd", "band", "real_bogus", "untrained",
    "schema_version", "classifier_version", "processing_host", "source_topic", "source_partition", "source_offset",
    "source_timestamp_ms", "ingested_ms", "classified_ms", "topic", "partition", "offset", "timestamp_ms",
    # v1.2: time scale, survey ids as the surveys type them, the detection's photometry
    "mjd_time_scale", "candid", "dia_source_id", "dia_object_id", "magpsf", "sigmapsf", "fid", "isdiffpos",
    "psf_flux", "psf_flux_err", "is_negative",
    # v1.3: which model gave real_bogus, why no validated model scored the input
    "real_bogus_model", "unscored_reason",
)


def _class_labels() -> tuple[str, ...]:
    """Every class_scores key a shipped model writes (``acai.hosted``, ``alertclass.star``, ...)."""
    from stream.subscribe.known import known_class_labels

    return known_class_labels()


def _real_bogus_models() -> tuple[str, ...]:
    from stream.subscribe.known import known_real_bogus_models

    return known_real_bogus_models()


#: CSV columns (names before units are added to the header): every class score and every P(real)
#: of a shipped model (``scores.braai.real`` beside ``real_bogus``), grouped per model.
CSV_COLUMNS = (*_SCALARS, "top_class", "top_prob", *(f"class_scores.{label}" for label in _class_labels()),
               "class_scores.other", *(f"scores.{model}.real" for model in _real_bogus_models()),
               *(f"survey_scores.{name}" for name in SURVEY_SCORE_NAMES), "models",
               *(f"quality.{name}" for name in QUALITY_FIELDS))


class OutputError(RuntimeError):
    """An output cannot be opened or written (unknown format, missing pyarrow, disk error)."""


class RecordWriter:
    """Base: ``write(record)`` each kept record, then ``close()``."""

    count = 0

    def write(self, record: ClassifiedRecord) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


class TableWriter(RecordWriter):
    """A live, fixed-width table: one line per record as it arrives (header every 40 lines).

    No value is cut: names are abbreviated to fit (``survey_rb`` shows ``drb``, ``rb`` or ``rel``
    for Rubin's reliability) and the last column, the models, takes the rest of the line. A
    value wider than its column (an over-long object id) pushes the line right instead of being
    cut. ``good`` is the survey's good-quality rule (``quality.good``: yes / no / -).
    """

    COLUMNS = (("survey", 6), ("alert_id", 20), ("object_id", 20), ("band", 4), ("mjd_tai", 12), ("real_bogus", 10),
               ("survey_rb", 9), ("good", 4), ("class", 18), ("prob", 6), ("latency_ms", 10), ("models", 0))

    def __init__(self, stream: TextIO | None = None, header_every: int = 40) -> None:
        self.stream = stream or sys.stdout
        self.header_every = header_every
        self.count = 0

    def _line(self, cells: Sequence[str]) -> str:
        return "  ".join(_printable(str(c)).ljust(w) for c, (_, w) in zip(cells, self.COLUMNS)).rstrip()

    def write(self, record: ClassifiedRecord) -> None:
        if self.count % self.header_every == 0:
            print(self._line([name for name, _ in self.COLUMNS]), file=self.stream)
        models = ",".join(f"{m.name}{'' if m.trained else '*'}{'!' if m.validated is False else ''}" for m in record.models)
        latency = record.latency_ms
        good = (record.quality or {}).get("good")
        print(self._line([record.survey, record.alert_id, record.object_id, record.band or "-", _fmt(record.mjd, 5),
                          _fmt(record.real_bogus), _survey_rb(record), "-" if good is None else ("yes" if good else "no"),
                          record.top_class or "-", _fmt(record.top_prob),
                          "-" if latency is None else str(latency), models or "-"]), file=self.stream, flush=True)
        self.count += 1


#: Short names of the surveys' scores in the table (9 characters with the value).
_SURVEY_SCORE_SHORT = {"reliability": "rel"}


def _printable(text: str) -> str:
    """``text`` with every control or other non-printable character shown as ``?``: a field from a
    packet (an ``object_id`` holding an OSC 52 clipboard write fits in 20 characters) must never
    reach the terminal as an escape sequence."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in text)


def _survey_rb(record: ClassifiedRecord) -> str:
    """The survey's own real/bogus score beside ours: ZTF drb (rb when older), Rubin reliability (rel)."""
    for name in SURVEY_SCORE_NAMES:
        if name in record.survey_scores:
            return f"{_SURVEY_SCORE_SHORT.get(name, name)} {_fmt(record.survey_scores[name], 2)}"
    return "-"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean_floats(data: Any) -> Any:
    """NaN/inf become null: JSON has no spelling for them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _clean_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_clean_floats(v) for v in data]
    return data


class JsonlWriter(RecordWriter):
    """JSON lines to a file path, or to an open text stream (e.g. stdout, left open on close)."""

    def __init__(self, target: str | os.PathLike[str] | TextIO) -> None:
        self._owned = not hasattr(target, "write")
        self._fh: TextIO = (Path(cast("str | os.PathLike[str]", target)).open("w", encoding="utf-8") if self._owned
                            else cast(TextIO, target))  # _owned: no write(), so a path
        self.count = 0

    def write(self, record: ClassifiedRecord) -> None:
        self._fh.write(json.dumps(_clean_floats(record.as_dict()), default=_json_default, sort_keys=True) + "\n")
        self.count += 1
        if not self._owned:
            self._fh.flush()  # a pipe reader sees each record as it comes

    def close(self) -> None:
        if self._owned:
            self._fh.close()
        else:
            self._fh.flush()


def csv_row(record: ClassifiedRecord) -> dict[str, Any]:
    """One flat CSV row keyed by :data:`CSV_COLUMNS` (no JSON in cells)."""
    data = record.as_dict()
    row: dict[str, Any] = {name: data.get(name) for name in _SCALARS}
    row["top_class"] = record.top_class
    row["top_prob"] = record.top_prob
    other = []
    for label, value in sorted(record.class_scores.items()):
        column = f"class_scores.{label}"
        if column in _CSV_COLUMN_SET:
            row[column] = value
        else:
            other.append(f"{label}={value:.6g}")
    row["class_scores.other"] = ";".join(other) or None
    for m in record.models:
        column = f"scores.{m.name}.real"
        if column in _CSV_COLUMN_SET and "real" in m.scores:
            row[column] = m.scores["real"]
    for name in SURVEY_SCORE_NAMES:
        row[f"survey_scores.{name}"] = record.survey_scores.get(name)
    row["models"] = ";".join(f"{m.name}:{m.version}{'' if m.trained else '*'}{'' if m.validated is not False else '!'}"
                             for m in record.models) or None
    for name in QUALITY_FIELDS:
        row[f"quality.{name}"] = (record.quality or {}).get(name)
    return row


_CSV_COLUMN_SET = frozenset(CSV_COLUMNS)
#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: a text starting with ``= + - @``, tab or CR gets a
    leading ``'`` (OWASP's advice), unless it is a plain number such as ``-12.5``. Numbers pass."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class CsvWriter(RecordWriter):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh = self.path.open("w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=list(CSV_COLUMNS))
        self._writer.writerow({c: csv_header_name(c) for c in CSV_COLUMNS})  # the header, with units
        self.count = 0

    def write(self, record: ClassifiedRecord) -> None:
        self._writer.writerow({k: ("" if v is None else csv_safe(v)) for k, v in csv_row(record).items()})
        self.count += 1

    def close(self) -> None:
        self._fh.close()


def _arrow_schema():
    import pyarrow as pa

    quality_types = {"rule": pa.string(), "solar_system_name": pa.string(), "solar_system_distance_arcsec": pa.float64(),
                     "snr": pa.float64(), "reliability": pa.float64(), "nbad": pa.int32(), "fwhm": pa.float64(),
                     "elong": pa.float64(), "magdiff": pa.float64()}

    model = pa.struct([("name", pa.string()), ("version", pa.string()), ("weights_sha256", pa.string()),
                       ("backend", pa.string()), ("trained", pa.bool_()), ("scores", pa.map_(pa.string(), pa.float64())),
                       ("validated", pa.bool_())])
    quality = pa.struct([(name, quality_types.get(name, pa.bool_())) for name in QUALITY_FIELDS])
    types = {
        "ra": pa.float64(), "dec": pa.float64(), "mjd": pa.float64(), "real_bogus": pa.float64(), "untrained": pa.bool_(),
        "source_partition": pa.int32(), "source_offset": pa.int64(), "source_timestamp_ms": pa.int64(),
        "ingested_ms": pa.int64(), "classified_ms": pa.int64(), "partition": pa.int32(), "offset": pa.int64(),
        "timestamp_ms": pa.int64(), "candid": pa.int64(), "dia_source_id": pa.int64(), "dia_object_id": pa.int64(),
        "magpsf": pa.float64(), "sigmapsf": pa.float64(), "fid": pa.int32(), "psf_flux": pa.float64(),
        "psf_flux_err": pa.float64(), "is_negative": pa.bool_(),
    }
    docs = field_docs()

    def described(name: str, kind: Any) -> Any:
        meta = {k: v for k, v in (("unit", FIELD_UNITS.get(name)), ("doc", docs.get(name))) if v}
        return pa.field(name, kind, metadata=meta or None)

    fields = [described(name, types.get(name, pa.string())) for name in _SCALARS]
    fields += [described("top_class", pa.string()), described("top_prob", pa.float64()),
               described("class_scores", pa.map_(pa.string(), pa.float64())),
               described("survey_scores", pa.map_(pa.string(), pa.float64())),
               described("survey_score_versions", pa.map_(pa.string(), pa.string())), described("models", pa.list_(model)),
               described("quality", quality)]
    return pa.schema(fields)


class ParquetWriter(RecordWriter):
    def __init__(self, path: str | os.PathLike[str], row_group: int = PARQUET_ROW_GROUP) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise OutputError("--output *.parquet needs pyarrow (pip install pyarrow)") from exc
        self.path = Path(path)
        self.schema = _arrow_schema()
        self._writer = pq.ParquetWriter(str(self.path), self.schema)
        self._rows: list[dict[str, Any]] = []
        self.row_group = row_group
        self.count = 0

    def write(self, record: ClassifiedRecord) -> None:
        data = record.as_dict()
        row = {name: data.get(name) for name in _SCALARS}
        row.update(top_class=record.top_class, top_prob=record.top_prob,
                   class_scores=list(record.class_scores.items()), survey_scores=list(record.survey_scores.items()),
                   survey_score_versions=list(record.survey_score_versions.items()),
                   models=[dict(m, scores=list(m["scores"].items())) for m in data["models"]], quality=data.get("quality"))
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


class AvroWriter(RecordWriter):
    """An Avro container of classified records (latest schema); ``replay`` can send it back."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import fastavro

        import schemas

        major, minor = schemas.latest_version("classified")
        self._schema = fastavro.parse_schema(schemas.load_schema("classified", major, minor))
        self._field_names = [f["name"] for f in schemas.load_schema("classified", major, minor)["fields"]]
        self.path = Path(path)
        self._fh = self.path.open("wb")
        self._writer = fastavro.write.Writer(self._fh, self._schema, codec="deflate")
        self.count = 0

    def write(self, record: ClassifiedRecord) -> None:
        data = record.as_dict()
        self._writer.write({name: data.get(name) for name in self._field_names})
        self.count += 1

    def close(self) -> None:
        self._writer.flush()
        self._fh.close()


def open_writer(path: str | os.PathLike[str]) -> RecordWriter:
    """The writer for ``path`` by its extension (``.jsonl``, ``.csv``, ``.parquet``, ``.avro``)."""
    suffix = Path(path).suffix.lower()
    writers = {".jsonl": JsonlWriter, ".json": JsonlWriter, ".csv": CsvWriter, ".parquet": ParquetWriter, ".avro": AvroWriter}
    if suffix not in writers:
        raise OutputError(f"--output {path}: unknown format {suffix or '(none)'}; use one of {', '.join(FILE_FORMATS)}")
    try:
        return writers[suffix](path)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc}") from exc


#: Longest PNG file name stem; longer ones keep a prefix and a hash of the whole (names stay unique).
PNG_STEM_MAX = 120


def png_name(record: ClassifiedRecord) -> str:
    """A safe, unique file name for a record's cutout triplet: ASCII letters, digits, ``-_.`` only,
    never hidden or ``..``, and at most ``PNG_STEM_MAX + 4`` characters however long the ids are
    (a file system refuses names over 255 bytes)."""
    full = f"{record.survey}_{record.object_id}_{record.alert_id}"
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in full)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if len(safe) > PNG_STEM_MAX:
        digest = hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        safe = f"{safe[:PNG_STEM_MAX - 17]}-{digest}"
    return f"{safe}.png"


def _scaled(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """ZScale limits (astropy), the usual display stretch for astronomical cutouts."""
    from astropy.visualization import ZScaleInterval

    finite = np.isfinite(image)
    if not finite.any():
        return image, 0.0, 1.0
    vmin, vmax = ZScaleInterval().get_limits(image[finite])
    return image, float(vmin), float(vmax if vmax > vmin else vmin + 1.0)


def render_triplet(alert: Any, record: ClassifiedRecord, path: str | os.PathLike[str]) -> Path:
    """Write a PNG with the science, template and difference cutouts and the record's scores.

    ``alert`` is a :class:`schemas.alert.Alert` decoded from the original message.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["gray"].with_extremes(bad="tab:blue")  # pixels without data (NaN, e.g. off the detector) stand out, not white
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.8))
    try:
        for ax, title, stamp in zip(axes, ("science", "template", "difference"), (alert.science, alert.template, alert.difference)):
            image, vmin, vmax = _scaled(np.asarray(stamp.data, dtype=np.float32))
            ax.imshow(image, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{title} {image.shape[1]}x{image.shape[0]}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        top = sorted(record.class_scores.items(), key=lambda kv: -kv[1])[:3]
        classes = ", ".join(f"{label} {prob:.2f}" for label, prob in top) or "no class scores"
        others = ", ".join(f"{m.name} {m.scores['real']:.2f}" for m in record.models
                           if "real" in m.scores and m.name != "realbogus")  # e.g. braai, ZTF's drb model
        survey = ", ".join(f"{k} {v:.2f}" for k, v in sorted(record.survey_scores.items())) or "-"
        flag = "  [UNTRAINED weights: scores meaningless]" if record.untrained else ""
        fig.suptitle(
            f"{record.survey.upper()} {record.object_id}  alert {record.alert_id}  {record.band or ''}  MJD {_fmt(record.mjd, 5)}\n"
            f"real/bogus {_fmt(record.real_bogus)}{' (' + others + ')' if others else ''} | {classes} | survey: {survey}{flag}", fontsize=9)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=90)
        return out
    finally:
        plt.close(fig)
