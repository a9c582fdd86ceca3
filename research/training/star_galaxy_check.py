"""Is the star / galaxy label of ``star_galaxy_set`` visible in the stamp? One hand-made feature.

The concentration of the light of the brightest source near the centre: flux within 1.5 px over
flux within 5 px (sky = the stamp's median), centred on the brightest pixel within 6 px of the
stamp centre. A point source (star) is concentrated, a galaxy less so. Its ROC AUC for
``star`` against ``galaxy`` on a set (no fitting, so no split is needed) says how much of the
label one number carries, which compares the template and the science stamp as inputs.

    python -m research.training.star_galaxy_check var/star_galaxy var/star_galaxy_science
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["concentration", "check"]


def concentration(image: np.ndarray, search: int = 6, inner: float = 1.5, outer: float = 5.0) -> float:
    """Flux within ``inner`` px / within ``outer`` px of the brightest pixel within ``search`` px
    of the centre (sky-subtracted with the median); NaN when the outer flux is not positive."""
    image = np.nan_to_num(image - np.nanmedian(image), nan=0.0)
    h, w = image.shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    near = np.hypot(yy - cy, xx - cx) <= search
    peak = np.argmax(np.where(near, image, -np.inf))
    py, px = divmod(int(peak), w)
    r = np.hypot(yy - py, xx - px)
    total = image[r <= outer].sum()
    return float(image[r <= inner].sum() / total) if total > 0 else float("nan")


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from engines.training.evaluate import roc_auc

    ok = np.isfinite(scores)
    auc = roc_auc(scores[ok], positive[ok])
    return float("nan") if auc is None else auc


def check(folder: Path) -> dict:
    images = np.load(folder / "star_galaxy.npz")["images"][:, 0]
    with open(folder / "star_galaxy.csv", newline="") as fh:
        labels = np.asarray([row["label"] for row in csv.DictReader(fh)])
    c = np.asarray([concentration(im) for im in images])
    star = labels == "star"
    return {"set": str(folder), "examples": len(labels), "undefined": int((~np.isfinite(c)).sum()),
            "concentration_auc_star_vs_galaxy": round(_auc(c, star), 4),
            "median_concentration": {"star": round(float(np.nanmedian(c[star])), 4),
                                     "galaxy": round(float(np.nanmedian(c[~star])), 4)}}


def main(argv: list[str] | None = None) -> int:
    for folder in (argv if argv is not None else sys.argv[1:]):
        print(json.dumps(check(Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
