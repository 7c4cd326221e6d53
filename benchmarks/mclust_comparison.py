"""`jaxem.select` against R's mclust, cell by cell, on the data sets of tests/data/mclust.

    python benchmarks/mclust_comparison.py [--float32] [--n-init 32] [--out FILE.md]

mclust's tables come from ``tests/data/mclust/make_select.R`` (``mclustBIC(X, G = 1:9)``, all
fourteen models, and with ``priorControl()`` the ten that have a prior); jaxem's grid is
`select`'s default, the same; jaxem's BIC is mclust's negated. Prints, per data set and prior,
the seconds of the cold ``select`` call, both best models, and every cell: mclust's BIC,
jaxem's, and the difference (positive: mclust's fit is better).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import jax

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "mclust"
SETS = ("faithful", "iris", "diabetes", "banknote")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--n-init", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    import jaxem

    with open(DATA / "select.csv") as f:
        rows = list(csv.DictReader(f))
    lines = [
        "| data set | prior | model | G | mclust | jaxem | jaxem - mclust |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = []
    worse = better = 0
    for name in SETS:
        X = np.loadtxt(DATA / f"{name}.csv", delimiter=",", skiprows=1)
        for prior in ("none", "default"):
            start = time.perf_counter()
            result = jaxem.select(
                X,
                key=jax.random.key(0),
                prior=None if prior == "none" else "default",
                n_init=args.n_init,
            )
            seconds = time.perf_counter() - start
            ref = {
                (r["model"], int(r["G"])): -float(r["bic"]) if r["bic"] != "NA" else math.nan
                for r in rows
                if r["dataset"] == name and r["prior"] == prior
            }
            for (model, g), theirs in sorted(ref.items()):
                ours = result.table[model][g]
                diff = ours - theirs
                worse += bool(diff > 2 or (math.isnan(ours) and not math.isnan(theirs)))
                better += bool(diff < -2 or (math.isnan(theirs) and not math.isnan(ours)))
                mark = " **" if diff > 2 else ""
                lines.append(
                    f"| {name} | {prior} | {model} | {g} | {theirs:.2f} | {ours:.2f} | "
                    f"{diff:+.2f}{mark} |"
                )
            best = min(ref, key=ref.get)
            chosen = (result.column, result.model.n_components)
            summary.append(
                f"{name:10s} {prior:8s} {seconds:6.1f} s  mclust best {best[0]} {best[1]}"
                f"  jaxem best {chosen[0]} {chosen[1]}"
                f" ({result.table[chosen[0]][chosen[1]]:.2f} vs mclust's {ref[best]:.2f})"
            )
            print(summary[-1], flush=True)
    text = "\n".join(summary) + (
        f"\n\ncells worse than mclust's by more than 2: {worse}; better by more than 2: {better}"
        f" (of {len(lines) - 2})\n\n"
    )
    text += "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
