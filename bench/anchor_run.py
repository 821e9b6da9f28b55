"""One centralized anchor synthesizer, run inside the separate bench venv (.bench-venv/).

Called by bench/quality_privacy.py as a subprocess; it only reads the training split and the
public schema and writes synthetic rows as CSV. It never computes a metric: every number in
the benchmark is computed by fedsynth's own code in the benchmark's process.

It deliberately does not import fedsynth (whose pins differ from the anchors'): the fedsynth
schema JSON is read directly. All anchors get the same public information fedsynth gets:

* categories: the schema's public category lists (missing values as one more category where
  the column is nullable);
* numericals, for the marginal-based anchors (MST, AIM) and the DP GANs of smartnoise, which
  need discrete inputs without spending budget on bounds: the schema's *declared* public bins,
  the same ones fedsynth's encoder uses: each declared point mass (e.g. capital-gain = 0,
  hours-per-week = 40) gets a bin of its own, the rest of [min, max] is cut into ``bins``
  equal-width bins on the declared scale (log for skewed columns), and small integer ranges
  (<= 32 values, e.g. education-num) keep every value. Sampled bins are decoded back to values
  uniformly inside the bin (log-uniformly on a log scale), point masses exactly;
* datetimes, likewise: ``bins`` equal-width bins of the schema's public [min, max] (in days),
  decoded uniformly inside the bin and written back in the column's format (its
  ``datetime_format``, else ISO: a date alone when the bounds have no time of day);
* CTGAN without DP (the synthesizer inside SDV) takes the raw numericals: it needs no public
  bounds because it makes no privacy claim (datetimes as days since the public minimum).

    .bench-venv/bin/python bench/anchor_run.py --anchor mst --train train.csv --schema schema.json \\
        --epsilon 1 --delta 1e-5 --rows 26048 --out synthetic.csv [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd

MISSING = "__missing__"
DEFAULT_BINS = 20


def _bins(col: dict) -> tuple[list[float], np.ndarray]:
    """(point masses, edges of the remaining range) from the public schema only."""
    lo, hi = float(col["min"]), float(col["max"])
    pm = sorted(float(v) for v in col.get("point_masses", []) or [])
    integer = col.get("subtype") == "int"
    if integer and hi - lo + 1 <= 32:
        return pm, np.arange(lo - 0.5, hi + 1.0, 1.0)
    k = int(col.get("bins") or DEFAULT_BINS)
    if col.get("scale") == "log":
        edges = lo + np.expm1(np.linspace(0.0, math.log1p(hi - lo), k + 1))
    else:
        edges = np.linspace(lo, hi, k + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    return pm, edges


def _as_days(col: dict) -> dict:
    """A datetime column as the numerical column of its days since the public minimum."""
    lo, hi = pd.Timestamp(col["min"]), pd.Timestamp(col["max"])
    return {"name": col["name"], "type": "numerical", "subtype": "float", "min": 0.0,
            "max": (hi - lo) / pd.Timedelta(days=1), "bins": col.get("bins")}


def _days(s: pd.Series, col: dict) -> np.ndarray:
    stamps = pd.to_datetime(s, format=col.get("datetime_format"), errors="coerce")
    return ((stamps - pd.Timestamp(col["min"])) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def _from_days(days: np.ndarray, col: dict) -> pd.Series:
    """Days since the public minimum back to the column's texts; whole days where the bounds are dates."""
    lo, hi = pd.Timestamp(col["min"]), pd.Timestamp(col["max"])
    dates_only = lo == lo.normalize() and hi == hi.normalize()
    days = np.clip(days, 0.0, (hi - lo) / pd.Timedelta(days=1))
    if dates_only:
        days = np.floor(days)
    stamps = lo + pd.to_timedelta(days, unit="D")
    fmt = col.get("datetime_format") or ("%Y-%m-%d" if dates_only else "%Y-%m-%dT%H:%M:%S")
    return pd.Series(stamps.strftime(fmt)).where(~np.isnan(days), "")


def encode_binned(df: pd.DataFrame, schema: dict) -> pd.DataFrame:
    out = {}
    for col in schema["columns"]:
        s = df[col["name"]]
        if col["type"] in ("categorical", "boolean"):
            out[col["name"]] = s.astype(object).where(s.notna(), MISSING).astype(str)
        elif col["type"] in ("numerical", "datetime"):
            if col["type"] == "datetime":
                v, col = _days(s, col), _as_days(col)
            else:
                v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
            pm, edges = _bins(col)
            codes = np.array([f"b{int(i)}" for i in np.clip(np.searchsorted(edges, v, side="right") - 1, 0,
                                                                len(edges) - 2)], dtype=object)
            for j, p in enumerate(pm):
                codes[v == p] = f"p{j}"
            codes[np.isnan(v)] = MISSING
            out[col["name"]] = codes
        else:
            raise SystemExit(f"anchor_run: column type {col['type']!r} is not supported by this benchmark")
    return pd.DataFrame(out)


def decode_binned(syn: pd.DataFrame, schema: dict, rng: np.random.Generator) -> pd.DataFrame:
    out = {}
    for col in schema["columns"]:
        s = syn[col["name"]].astype(str)
        if col["type"] in ("categorical", "boolean"):
            out[col["name"]] = s.where(s != MISSING, "")
            continue
        original, col = col, (_as_days(col) if col["type"] == "datetime" else col)
        pm, edges = _bins(col)
        vals = np.full(len(s), np.nan)
        for j, p in enumerate(pm):
            vals[(s == f"p{j}").to_numpy()] = p
        for i in range(len(edges) - 1):
            m = (s == f"b{i}").to_numpy()
            if not m.any():
                continue
            a, b = edges[i], min(edges[i + 1], float(col["max"]))
            if col.get("scale") == "log" and b > a:
                lo = float(col["min"])
                u = rng.uniform(math.log1p(a - lo), math.log1p(b - lo), m.sum())
                vals[m] = lo + np.expm1(u)
            else:
                vals[m] = rng.uniform(a, b, m.sum())
        out[col["name"]] = (_from_days(vals, original) if original["type"] == "datetime"
                            else _finish_numeric(vals, col, pm))
    return pd.DataFrame(out)


def _finish_numeric(vals: np.ndarray, col: dict, pm: list[float]) -> pd.Series:
    vals = np.clip(vals, float(col["min"]), float(col["max"]))
    if col.get("subtype") == "int":
        r = np.round(vals)
        # a bin's interior value rounded onto a point mass would inflate it: move it off
        for p in pm:
            hit = (r == p) & ~np.isclose(vals, p)
            r[hit] = np.clip(p + 1, float(col["min"]), float(col["max"]))
        return pd.Series(r).map(lambda v: "" if np.isnan(v) else str(int(v)))
    return pd.Series(vals).map(lambda v: "" if np.isnan(v) else repr(float(v)))


def run_smartnoise(name: str, binned: pd.DataFrame, eps: float, delta: float, rows: int, epochs: int) -> pd.DataFrame:
    from snsynth import Synthesizer

    kwargs: dict = {"epsilon": eps, "delta": delta, "verbose": False}
    if name in ("dpctgan", "patectgan"):
        kwargs["epochs"] = epochs
    synth = Synthesizer.create(name, **kwargs)
    synth.fit(binned, categorical_columns=list(binned.columns), preprocessor_eps=0.0)
    return pd.DataFrame(synth.sample(rows), columns=binned.columns)


def run_ctgan(train: pd.DataFrame, schema: dict, rows: int, epochs: int, rng: np.random.Generator) -> pd.DataFrame:
    from ctgan import CTGAN

    frame = pd.DataFrame({c["name"]: (train[c["name"]].astype(object).where(train[c["name"]].notna(), MISSING).astype(str)
                                      if c["type"] in ("categorical", "boolean") else
                                      _days(train[c["name"]], c) if c["type"] == "datetime" else
                                      pd.to_numeric(train[c["name"]]))
                          for c in schema["columns"]})
    discrete = [c["name"] for c in schema["columns"] if c["type"] in ("categorical", "boolean")]
    model = CTGAN(epochs=epochs, verbose=False)
    model.fit(frame, discrete_columns=discrete)
    syn = model.sample(rows)
    out = {}
    for c in schema["columns"]:
        s = syn[c["name"]]
        if c["type"] in ("categorical", "boolean"):
            s = s.astype(str)
            out[c["name"]] = s.where(s != MISSING, "")
        elif c["type"] == "datetime":
            out[c["name"]] = _from_days(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float), c)
        else:
            out[c["name"]] = _finish_numeric(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float), c, [])
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchor", required=True, choices=("mst", "aim", "dpctgan", "patectgan", "ctgan"))
    ap.add_argument("--train", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    schema = json.loads(open(args.schema).read())
    names = [c["name"] for c in schema["columns"]]
    train = pd.read_csv(args.train, dtype=str, keep_default_na=False)[names]
    train = train.replace({"": None, "?": None})
    for c in schema["columns"]:
        if c["type"] == "numerical":
            train[c["name"]] = pd.to_numeric(train[c["name"]])
    start = time.time()
    if args.anchor == "ctgan":
        syn = run_ctgan(train, schema, args.rows, args.epochs, rng)
    else:
        binned = run_smartnoise(args.anchor, encode_binned(train, schema), args.epsilon, args.delta, args.rows,
                                args.epochs)
        syn = decode_binned(binned, schema, rng)
    fit_s = time.time() - start
    syn[names].to_csv(args.out, index=False)
    print(json.dumps({"anchor": args.anchor, "seconds": round(fit_s, 1), "rows": len(syn)}))


if __name__ == "__main__":
    main()
