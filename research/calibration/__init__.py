"""Calibration of the shipped real/bogus scores (issue #25 part 3): reliability diagrams, ECE,
temperature scaling fitted on validation, thresholds at stated recalls; on held-out data only.

``python -m research.calibration --pool ../shared/ztf_pool --rubin-pool ../shared/rubin_pool
--rubin-data ../shared/data/rubin --out research/reports/calibration``
"""
