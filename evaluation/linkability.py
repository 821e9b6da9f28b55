"""Linkability: can two halves of one person's record be joined through the synthetic rows?

The attacker holds two disjoint sets of a real person's columns, say from two different
releases, and wants to know they belong to the same person. For each half it finds the
``k`` nearest synthetic rows on the embedding built from that half's columns only; the link is
made when the two neighbour sets share a synthetic row (Anonymeter's linkability attack). A
synthetic row that copies a training row links its two halves at once; a faithful generator
links a holdout row's halves about as often. The holdout rows are the control
(:mod:`fedsynth.evaluation.added_risk`).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import NearestNeighbors

from fedsynth.common.data.schema import Schema
from fedsynth.evaluation.added_risk import RiskEstimate, estimate
from fedsynth.evaluation.embedding import Embedding
from fedsynth.evaluation.prepared import PreparedTable

NEIGHBOURS = 1
"""Synthetic neighbours per half (Anonymeter's default); more makes links easier on every row."""
_CHUNK = 250
"""Targets per block of the distance matrix (250 x 26k synthetic rows: 52 MB)."""
_TIE = 1e-9


def default_halves(columns: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The first and second half of ``columns``, in schema order."""
    mid = (len(columns) + 1) // 2
    return tuple(columns[:mid]), tuple(columns[mid:])


def _within_kth(schema: Schema, synthetic: PreparedTable, targets: PreparedTable, half: tuple[str, ...],
                k: int, others: list[PreparedTable]) -> np.ndarray:
    """``out[i, j]``: synthetic row j is among the k nearest of target i on ``half``, ties included.

    Ties matter: many rows share the same values on a few columns, and an arbitrary pick among
    equally near rows would miss a link that is there.
    """
    layout = Embedding.build(schema, [synthetic, *others], exclude=tuple(n for n in schema.names if n not in half))
    syn, tgt = layout.transform(synthetic), layout.transform(targets)
    kth = NearestNeighbors(n_neighbors=min(k, synthetic.n_rows), algorithm="brute").fit(syn).kneighbors(tgt)[0][:, -1]
    return euclidean_distances(tgt, syn) <= kth[:, None] + _TIE


def _links(schema: Schema, synthetic: PreparedTable, targets: PreparedTable,
           halves: tuple[tuple[str, ...], tuple[str, ...]], k: int, others: list[PreparedTable]) -> np.ndarray:
    hits = []
    for start in range(0, targets.n_rows, _CHUNK):
        chunk = targets.take(np.arange(start, min(start + _CHUNK, targets.n_rows)))
        a, b = (_within_kth(schema, synthetic, chunk, h, k, others) for h in halves)
        hits.append((a & b).any(axis=1))
    return np.concatenate(hits)


def linkability(schema: Schema, synthetic: PreparedTable, members: PreparedTable, control: PreparedTable,
                halves: tuple[tuple[str, ...], tuple[str, ...]], rng: np.random.Generator,
                k: int = NEIGHBOURS, level: float = 0.95) -> RiskEstimate:
    """Added risk of linking the two column ``halves`` of a row through shared synthetic neighbours."""
    if not halves[0] or not halves[1] or set(halves[0]) & set(halves[1]):
        raise ValueError(f"linkability needs two disjoint, non-empty column sets, got {halves}")
    hits = [_links(schema, synthetic, t, halves, k, [members, control]) for t in (members, control)]
    what = ("An attacker links the two halves of a person's record through a shared synthetic row for "
            "{train} of training rows and {control} of rows the synthesizer never saw")
    detail = f"columns {', '.join(halves[0])} | {', '.join(halves[1])}; {k} neighbour(s) per half"
    return estimate("linkability", detail, hits[0], hits[1], rng, what, level)
