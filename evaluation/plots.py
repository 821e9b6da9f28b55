"""The report's plots as inline SVG.

Plots are drawn with matplotlib's object API (``Figure``), not pyplot: no global backend or
figure registry is touched, so writing a report from a server thread or inside another
program's matplotlib session is safe. Text stays text (searchable, small), and ``$`` is escaped
so a category such as ``$50k+`` is drawn literally instead of being parsed as math.
"""

from __future__ import annotations

import io
import itertools
import re
from contextlib import AbstractContextManager

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from fedsynth.evaluation.formatting import fmt_num, fmt_pct, mpl_text, shorten
from fedsynth.evaluation.guarantee import dp_max_tpr
from fedsynth.evaluation.jsonable import JsonObject

REAL_COLOUR = "#4c72b0"
SYN_COLOUR = "#dd8452"


_SVG_IDS = itertools.count(1)


def _svg(fig: Figure, key: str) -> str:
    """Serialise a figure to inline SVG with document-unique ids.

    matplotlib derives ids (clip paths, glyph markers) from content hashes, so two similar
    figures in one HTML page would share ids and one could clip the other; prefixing every id
    and reference with a per-figure key keeps them apart.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    prefix = f"{re.sub(r'[^A-Za-z0-9]', '', key)[:20]}{next(_SVG_IDS)}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text.replace("<svg ", '<svg class="plot-svg" role="img" ', 1)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100)


def plot_style() -> AbstractContextManager[None]:
    """The report's matplotlib settings, applied only while the report is drawn."""
    return rc_context({
        "svg.fonttype": "none",
        "svg.hashsalt": "fedsynth-report",
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 9,
        "legend.fontsize": 7,
        "legend.frameon": False,
    })


def column_svg(entry: JsonObject) -> str:
    """One column's real-vs-synthetic plot (histogram or bars) from its report entry."""
    plot = entry["plot"]
    if plot["kind"] == "histogram":
        fig = _figure(4.2, 2.5)
        ax = fig.add_subplot()
        edges = np.asarray(plot["edges"], dtype=float)
        ax.stairs(plot["real"], edges, fill=True, alpha=0.45, color=REAL_COLOUR,
                  label=mpl_text(f"real ({fmt_pct(plot['missing_real'])} missing)"))
        ax.stairs(plot["synthetic"], edges, color=SYN_COLOUR, linewidth=1.6,
                  label=mpl_text(f"synthetic ({fmt_pct(plot['missing_synthetic'])} missing)"))
        if plot.get("log_x"):
            ax.set_xscale("symlog", linthresh=1.0)
        if plot.get("datetime"):
            ax.xaxis_date()
            fig.autofmt_xdate()
        ax.set_ylabel("share of rows")
        sub = f"KS {fmt_num(entry['ks'])} · TVD {fmt_num(entry['tvd'])}"
    else:
        labels = plot["labels"]
        n = len(labels)
        fig = _figure(4.2, max(1.6, 0.24 * n + 0.8))
        ax = fig.add_subplot()
        y = np.arange(n)
        ax.barh(y - 0.2, plot["real"], height=0.4, color=REAL_COLOUR, label="real")
        ax.barh(y + 0.2, plot["synthetic"], height=0.4, color=SYN_COLOUR, label="synthetic")
        ax.set_yticks(y, [mpl_text(shorten(lbl)) for lbl in labels])
        ax.invert_yaxis()
        ax.set_xlabel("share of rows")
        sub = f"TVD {fmt_num(entry['tvd'])}"
    ax.set_title(mpl_text(f"{shorten(entry['name'], 40)}   ({sub})"), loc="left")
    ax.legend(loc="best")
    return _svg(fig, "col")


def heatmap_svg(matrix: list[list[float]], names: list[str], title: str, diverging: bool) -> str:
    """An association matrix as a heatmap; ``diverging`` for signed values in [-1, 1]."""
    m = np.asarray(matrix, dtype=float)
    size = max(3.6, 0.32 * len(names) + 1.6)
    fig = _figure(size, size * 0.92)
    ax = fig.add_subplot()
    cmap, lo = ("RdBu_r", -1.0) if diverging else ("Reds", 0.0)
    image = ax.imshow(m, cmap=cmap, vmin=lo, vmax=1.0)
    ticks = np.arange(len(names))
    short = [mpl_text(shorten(n, 18)) for n in names]
    ax.set_xticks(ticks, short, rotation=90)
    ax.set_yticks(ticks, short)
    ax.spines[:].set_visible(False)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j:
                    ax.text(j, i, f"{m[i, j]:.2f}".replace("0.", ".", 1), ha="center", va="center",
                            fontsize=5, color="white" if abs(m[i, j]) > 0.6 else "black")
    ax.set_title(mpl_text(title), loc="left")
    fig.colorbar(image, ax=ax, shrink=0.7)
    return _svg(fig, "heat")


def dcr_svg(dcr: JsonObject) -> str:
    """The DCR histograms: distances to the nearest training row and to the nearest holdout row."""
    fig = _figure(4.6, 2.6)
    ax = fig.add_subplot()
    edges = np.asarray(dcr["histogram"]["edges"], dtype=float)
    ax.stairs(dcr["histogram"]["holdout"], edges, fill=True, alpha=0.45, color=REAL_COLOUR,
              label="to nearest holdout row (never trained on)")
    ax.stairs(dcr["histogram"]["train"], edges, color=SYN_COLOUR, linewidth=1.6,
              label="to nearest training row")
    ax.set_xlabel("distance of a synthetic row to the closest real row")
    ax.set_ylabel("share of synthetic rows")
    ax.set_title("Distance to closest record", loc="left")
    ax.legend(loc="best")
    return _svg(fig, "dcr")


def roc_svg(attacks: list[JsonObject], guarantee: JsonObject | None) -> str:
    """The attacks' ROC curves on log-log axes, with the DP guarantee's bound when there is one."""
    fig = _figure(4.6, 3.4)
    ax = fig.add_subplot()
    grid = np.logspace(-3, 0, 200)
    ax.plot(grid, grid, color="#888888", linestyle=":", label="random guessing")
    if guarantee:
        bound = dp_max_tpr(guarantee["epsilon_max"], guarantee["delta_max"], grid)
        ax.plot(grid, bound, color="#2a9d55", linestyle="--",
                label=f"limit under the DP guarantee (epsilon={guarantee['epsilon_max']:.3g})")
    for attack in attacks:
        fpr = np.maximum(np.asarray(attack["roc"]["fpr"], dtype=float), 1e-3)
        tpr = np.maximum(np.asarray(attack["roc"]["tpr"], dtype=float), 1e-3)
        ax.plot(fpr, tpr, linewidth=1.4, label=mpl_text(f"{attack['attack']} (AUC {attack['auc']:.3f})"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1.05)
    ax.set_xlabel("false-positive rate (outsiders wrongly flagged)")
    ax.set_ylabel("true-positive rate (members found)")
    ax.set_title("Membership-inference ROC (log-log)", loc="left")
    ax.legend(loc="lower right")
    return _svg(fig, "roc")
