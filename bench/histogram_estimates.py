"""How well the released histograms give each numerical column its shape: projection alone
against projection with the bins spread by ``halving_split`` (docs/benchmarks.md).

No model is trained: for every bundled table (seed-0 80/20 split) the exact counts release is
made noisy ``--draws`` times, at the noise of one party (single-party, and each institution in
federated runs) and of ``--institutions`` parties summed (a local-noise federated run's counts: every
institution adds its own full noise; with shared noise the pooled counts carry about one party's). Each estimate becomes a column by quantile mapping, as
calibrated sampling does, and is scored with the report's 1-way TVD against the training rows.
Sampling can do no better than its histogram, so this is the 1-way TVD calibration can reach.

    python bench/histogram_estimates.py                 # all tables, 6 draws
    python bench/histogram_estimates.py --tables taxi --draws 20
"""

from __future__ import annotations

import argparse

import numpy as np

from fedsynth.common.data.days import from_days
from fedsynth.common.data.encoding import TableEncoder, as_declared
from fedsynth.common.data.units import join_part
from fedsynth.common.dp.accounting import frequencies_from_counts, frequency_noise
from fedsynth.evaluation.marginals import marginal_tvds
from fedsynth.evaluation.prepared import prepare
from fedsynth.simulations.datasets import BUNDLED, load_dataset
from fedsynth.simulations.partition import holdout_split


def column_tvds(train, schema, encoder: TableEncoder, freqs: list[np.ndarray], rng: np.random.Generator
                ) -> dict[str, float]:
    """1-way TVD of each histogram column once mapped onto ``freqs`` (its released histogram)."""
    synthetic = train.copy()
    hists = encoder.split_counts(freqs)[1]
    for layout, f in zip(encoder.histograms, hists):
        values = layout.values(train[layout.column])
        ranks = np.where(np.isnan(values), np.nan, rng.permutation(len(values)).astype(float))
        mapped = layout.quantile_map(ranks, f, rng)
        if layout.datetime:  # a timestamp's day or time of day put back into its other part
            synthetic[layout.column] = from_days(join_part(schema.column(layout.column), synthetic[layout.column],
                                                           layout.part, mapped))
        else:
            synthetic[layout.column] = as_declared(mapped, schema.column(layout.column))
    one, _ = marginal_tvds(prepare(train, schema, "real"), prepare(synthetic, schema, "synthetic"), schema)
    return {h.column: one[h.column] for h in encoder.histograms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=sorted(BUNDLED), choices=sorted(BUNDLED))
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--institutions", type=int, default=5)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sigma = frequency_noise(args.epsilon, args.delta)
    means: dict[tuple[int, str], list[float]] = {}
    for name in args.tables:
        df, schema, _ = load_dataset(name)
        train, _ = holdout_split(df, 0.2, 0)
        encoder = TableEncoder(schema)
        blocks = encoder.count_blocks(train, encoder.encode(train))
        exact = [np.asarray(b, dtype=float).sum(axis=0) if np.ndim(b) == 2 else np.asarray(b, dtype=float)
                 for b in blocks]
        for parties in (1, args.institutions):
            std = sigma * np.sqrt(len(exact) * parties)  # per cell: each party's sqrt(#blocks) sensitivity
            scores = {"projection": [], "halving": []}
            for _ in range(args.draws):
                noisy = [e + std * rng.standard_normal(e.size) for e in exact]
                for method, ordered in (("projection", None), ("halving", encoder.counts_layout.ordered)):
                    scores[method].append(column_tvds(train, schema, encoder,
                                                      frequencies_from_counts(noisy, ordered=ordered), rng))
            for method, runs in scores.items():
                per_column = {c: float(np.mean([r[c] for r in runs])) for c in runs[0]}
                worst = max(per_column, key=per_column.get)
                mean = float(np.mean(list(per_column.values())))
                means.setdefault((parties, method), []).append(mean)
                print(f"{name:<8} {parties} part{'y' if parties == 1 else 'ies'}  {method:<10} mean {mean:.4f}  "
                      f"worst {worst} {per_column[worst]:.4f}  "
                      + " ".join(f"{c}={v:.3f}" for c, v in per_column.items()), flush=True)
    for (parties, method), vals in sorted(means.items()):
        print(f"MEAN over {len(vals)} tables, {parties} part{'y' if parties == 1 else 'ies'}, {method}: "
              f"{np.mean(vals):.4f}")


if __name__ == "__main__":
    main()
