"""Data sets bundled with jaxem."""

from __future__ import annotations

from importlib import resources

import numpy as np


def load_faithful() -> tuple[np.ndarray, list[str]]:
    """The Old Faithful geyser data (Härdle 1991; Azzalini and Bowman 1990), from R's datasets.

    Returns:
        ``X`` ``(272, 2)`` float64 (eruption length in minutes, waiting time to the next eruption
        in minutes) and the column names.
    """
    with resources.files("jaxem").joinpath("data/faithful.csv").open() as f:
        header = f.readline().strip().split(",")
        X = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return X, header
