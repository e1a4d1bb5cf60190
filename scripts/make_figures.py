"""Draw the README's pictures into docs/figures/ with the ``streamgmm`` commands themselves.

    .venv/bin/python scripts/make_figures.py [--only mixture,covariance,timeline,detection]

- ``mixture.png``: ``streamgmm fit`` on 8,000 synthetic card transactions
  (``streamgmm generate``; log amount, log distance from home, log amount
  over the last 24 hours), then ``streamgmm plot`` in its first two principal axes;
- ``covariance_types.png``: the same data, ``--compare-covariance``;
- ``timeline.png``: ``streamgmm run`` with the embedded default configuration
  (30,000 events), alerts to a file and an audit with scores, then
  ``streamgmm plot scores`` on the audit;
- ``detection.png``: ``streamgmm plot detection`` on docs/figures/detection.json,
  written by ``bench/eval_detection.py --datasets mammography,thyroid,cardio
  --json docs/figures/detection.json`` (not rerun here: HalfSpaceTrees scores a
  few hundred events a second; all six data sets take most of an hour).

Each PNG is stored with a 128-colour palette (Pillow), which keeps it under
150 KB without a visible change. Every command run is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
DPI = "100"
COLOURS = 128
FIGURES = ("mixture", "covariance", "timeline", "detection")


def streamgmm(*args: str, env: dict | None = None) -> None:
    """Run one ``streamgmm`` command as a user would, and show it."""
    shown = " ".join(str(a).replace(str(ROOT) + "/", "") for a in args)
    print(f"$ streamgmm {shown}", flush=True)
    res = subprocess.run([sys.executable, "-m", "streamgmm", *map(str, args)],
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"streamgmm {args[0]} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    if args[0] == "plot":
        print("  " + res.stderr.strip().splitlines()[-1], flush=True)


def cards_csv(work: Path) -> Path:
    """8,000 generated transactions as a CSV of log-scaled amounts and distances."""
    events = work / "cards.jsonl"
    streamgmm("generate", "-n", "8000", "--seed", "0", "-o", events)
    out = work / "cards.csv"
    with open(events) as src, open(out, "w") as dst:
        dst.write("log_amount,log_distance_km,log_amount_last_24h\n")
        for line in src:
            e = json.loads(line)
            dst.write(f"{math.log1p(e['amount']):.6f},{math.log1p(e['distance_km']):.6f},"
                      f"{math.log1p(e['amount_last_24h']):.6f}\n")
    return out


def mixture_figures(work: Path, which: set[str]) -> None:
    data = cards_csv(work)
    model = work / "cards_model.npz"
    streamgmm("fit", data, "-o", model, "-k", "4", "--quiet")
    if "mixture" in which:
        streamgmm("plot", model, data, "-o", OUT / "mixture.png", "--dpi", DPI)
    if "covariance" in which:
        streamgmm("plot", model, data, "-o", OUT / "covariance_types.png",
                  "--compare-covariance", "--max-points", "1500", "--dpi", "75")


def timeline_figure(work: Path) -> None:
    audit = work / "audit.txt"
    streamgmm("run", env={
        "STREAMGMM__ALERTS__SINK": "file",
        "STREAMGMM__ALERTS__PATH": str(work / "alerts.jsonl"),
        "STREAMGMM__DEAD_LETTER__SINK": "none",
        "STREAMGMM__AUDIT__PATH": str(audit),
        "STREAMGMM__AUDIT__SCORES": "true",
    })
    streamgmm("plot", "scores", audit, "-o", OUT / "timeline.png", "--dpi", DPI)


def detection_figure() -> None:
    results = OUT / "detection.json"
    if not results.exists():
        sys.exit(f"{results} is missing: run OPENBLAS_NUM_THREADS=1 .venv/bin/python "
                 "bench/eval_detection.py --datasets mammography,thyroid,cardio --json "
                 "docs/figures/detection.json first")
    streamgmm("plot", "detection", results, "-o", OUT / "detection.png", "--dpi", "80")


def palette(path: Path) -> None:
    """Store a PNG with a palette of COLOURS colours (a figure has few), optimised."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(COLOURS, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"  {path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated figures to draw (default: {','.join(FIGURES)})")
    which = set(parser.parse_args().only.split(","))
    unknown = which - set(FIGURES)
    if unknown:
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}")
    OUT.mkdir(parents=True, exist_ok=True)
    names = {"mixture": "mixture", "covariance": "covariance_types", "timeline": "timeline",
             "detection": "detection"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if which & {"mixture", "covariance"}:
            mixture_figures(work, which)
        if "timeline" in which:
            timeline_figure(work)
    if "detection" in which:
        detection_figure()
    for name in FIGURES:
        if name in which:
            palette(OUT / f"{names[name]}.png")


if __name__ == "__main__":
    main()
