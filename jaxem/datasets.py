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


def load_anes96() -> tuple[np.ndarray, list[str]]:
    """Six categorical answers of 944 respondents to the American National Election Study of
    1996 (public domain; the subset distributed with statsmodels), coded from 0:

    - ``PID``: party identification, 0 strong Democrat ... 3 independent ... 6 strong Republican;
    - ``selfLR``, ``ClinLR``, ``DoleLR``: where the respondent places themself, Bill Clinton and
      Bob Dole, 0 extremely liberal ... 3 moderate ... 6 extremely conservative;
    - ``educ``: education, 0 grades 1-8 ... 2 high school graduate ... 4 college degree,
      5 master's degree, 6 PhD;
    - ``vote``: expected vote, 0 Clinton, 1 Dole.

    Returns:
        ``X`` ``(944, 6)`` float64 category codes and the column names.
    """
    with resources.files("jaxem").joinpath("data/anes96.csv").open() as f:
        header = f.readline().strip().split(",")
        X = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return X, header
