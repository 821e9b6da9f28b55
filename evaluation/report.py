"""Writing an evaluation result: ``report.json`` for machines, ``report.html`` for people.

The HTML report is one self-contained file: styles inline, plots as inline SVG (text kept as
text, so it stays searchable and small), no script at all and a Content-Security-Policy that
forbids loading anything, so it reads the same offline, in an air-gapped review room, or as an
e-mail attachment. Every string that comes from the data or the schema (column names,
categories, client ids) is HTML-escaped, and ``$`` is escaped for matplotlib so a category such
as ``$50k+`` is drawn literally instead of being parsed as math.

Plots are drawn with matplotlib's object API (``Figure``), not pyplot: no global backend or
figure registry is touched, so writing a report from a server thread or inside another
program's matplotlib session is safe.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import math
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from fedsynth.common.atomic import atomic_write_text

REAL_COLOUR = "#4c72b0"
SYN_COLOUR = "#dd8452"
_OK, _NOTE, _WARN = "ok", "note", "warn"


# =========================================================================== JSON
def to_jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays unwrapped, NaN and infinities become null."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def write_report(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` atomically; return their paths.

    Both are fully rendered in memory before either file is replaced, so a failure while
    drawing leaves any previous report untouched rather than a new JSON next to an old HTML.
    """
    out = Path(out_dir)
    clean = to_jsonable(result)
    json_text = json.dumps(clean, indent=2, allow_nan=False) + "\n"
    html_text = render_html(clean)
    json_path, html_path = out / "report.json", out / "report.html"
    atomic_write_text(json_path, json_text)
    atomic_write_text(html_path, html_text)
    return json_path, html_path


# =========================================================================== formatting
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.{digits}f} %"


def _ci(ci: list[float] | None, pct: bool = False) -> str:
    if not ci:
        return ""
    f = _pct if pct else _num
    return f"[{f(ci[0])}, {f(ci[1])}]"


def _mpl(text: Any) -> str:
    """Text for matplotlib: ``$`` would start mathtext and mis-draw or crash on user strings."""
    return str(text).replace("$", r"\$")


# =========================================================================== plotting
_SVG_IDS = itertools.count(1)


def _svg(fig: Any, key: str) -> str:
    """Serialise a figure to inline SVG with document-unique ids.

    matplotlib derives ids (clip paths, glyph markers) from content hashes, so two similar
    figures in one HTML page would share ids and one could clip the other; prefixing every id
    and reference with a per-figure key keeps them apart.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    prefix = f"{re.sub(r'[^A-Za-z0-9]', '', key)[:20]}{next(_SVG_IDS)}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return text.replace("<svg ", '<svg class="plot-svg" role="img" ', 1)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _rc() -> Any:
    import matplotlib

    return matplotlib.rc_context({
        "svg.fonttype": "none",
        "svg.hashsalt": "fedsynth-report",
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 9,
        "legend.fontsize": 7,
        "legend.frameon": False,
    })


def _column_svg(entry: dict[str, Any]) -> str:
    plot = entry["plot"]
    if plot["kind"] == "histogram":
        fig = _figure(4.2, 2.5)
        ax = fig.add_subplot()
        edges = np.asarray(plot["edges"], dtype=float)
        ax.stairs(plot["real"], edges, fill=True, alpha=0.45, color=REAL_COLOUR,
                  label=_mpl(f"real ({_pct(plot['missing_real'])} missing)"))
        ax.stairs(plot["synthetic"], edges, color=SYN_COLOUR, linewidth=1.6,
                  label=_mpl(f"synthetic ({_pct(plot['missing_synthetic'])} missing)"))
        if plot.get("log_x"):
            ax.set_xscale("symlog", linthresh=1.0)
        if plot.get("datetime"):
            ax.xaxis_date()
            fig.autofmt_xdate()
        ax.set_ylabel("share of rows")
        sub = f"KS {_num(entry['ks'])} · TVD {_num(entry['tvd'])}"
    else:
        labels = plot["labels"]
        n = len(labels)
        fig = _figure(4.2, max(1.6, 0.24 * n + 0.8))
        ax = fig.add_subplot()
        y = np.arange(n)
        ax.barh(y - 0.2, plot["real"], height=0.4, color=REAL_COLOUR, label="real")
        ax.barh(y + 0.2, plot["synthetic"], height=0.4, color=SYN_COLOUR, label="synthetic")
        ax.set_yticks(y, [_mpl(_short(lbl)) for lbl in labels])
        ax.invert_yaxis()
        ax.set_xlabel("share of rows")
        sub = f"TVD {_num(entry['tvd'])}"
    ax.set_title(_mpl(f"{_short(entry['name'], 40)}   ({sub})"), loc="left")
    ax.legend(loc="best")
    return _svg(fig, "col")


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _heatmap_svg(matrix: list[list[float]], names: list[str], title: str, diverging: bool) -> str:
    m = np.asarray(matrix, dtype=float)
    size = max(3.6, 0.32 * len(names) + 1.6)
    fig = _figure(size, size * 0.92)
    ax = fig.add_subplot()
    cmap, lo = ("RdBu_r", -1.0) if diverging else ("Reds", 0.0)
    image = ax.imshow(m, cmap=cmap, vmin=lo, vmax=1.0)
    ticks = np.arange(len(names))
    short = [_mpl(_short(n, 18)) for n in names]
    ax.set_xticks(ticks, short, rotation=90)
    ax.set_yticks(ticks, short)
    ax.spines[:].set_visible(False)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j:
                    ax.text(j, i, f"{m[i, j]:.2f}".replace("0.", ".", 1), ha="center", va="center",
                            fontsize=5, color="white" if abs(m[i, j]) > 0.6 else "black")
    ax.set_title(_mpl(title), loc="left")
    fig.colorbar(image, ax=ax, shrink=0.7)
    return _svg(fig, "heat")


def _dcr_svg(dcr: dict[str, Any]) -> str:
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


def _roc_svg(attacks: list[dict[str, Any]], guarantee: dict[str, Any] | None) -> str:
    fig = _figure(4.6, 3.4)
    ax = fig.add_subplot()
    grid = np.logspace(-3, 0, 200)
    ax.plot(grid, grid, color="#888888", linestyle=":", label="random guessing")
    if guarantee:
        from fedsynth.evaluation.guarantee import dp_max_tpr

        bound = dp_max_tpr(guarantee["epsilon_max"], guarantee["delta_max"], grid)
        ax.plot(grid, bound, color="#2a9d55", linestyle="--",
                label=f"limit under the DP guarantee (epsilon={guarantee['epsilon_max']:.3g})")
    for attack in attacks:
        fpr = np.maximum(np.asarray(attack["roc"]["fpr"], dtype=float), 1e-3)
        tpr = np.maximum(np.asarray(attack["roc"]["tpr"], dtype=float), 1e-3)
        ax.plot(fpr, tpr, linewidth=1.4, label=_mpl(f"{attack['attack']} (AUC {attack['auc']:.3f})"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(1e-3, 1.05)
    ax.set_xlabel("false-positive rate (outsiders wrongly flagged)")
    ax.set_ylabel("true-positive rate (members found)")
    ax.set_title("Membership-inference ROC (log-log)", loc="left")
    ax.legend(loc="lower right")
    return _svg(fig, "roc")


# =========================================================================== verdicts
def _badge(level: str, text: str) -> str:
    return f'<span class="badge {level}">{_e(text)}</span>'


def _privacy_level(result: dict[str, Any]) -> tuple[str, str]:
    mia = result["privacy"]["membership_inference"]
    if "strongest" not in mia:
        return _NOTE, "no attack run"
    s = mia["strongest"]
    if s["auc_ci95"][0] <= 0.5:
        return _OK, "no attack beat chance"
    if s["auc"] < 0.6:
        return _NOTE, "attacks slightly better than chance"
    return _WARN, "attacks identify training rows"


def _copy_level(exact: dict[str, Any]) -> tuple[str, str]:
    if exact["exact_copy_rate_equal_size"] > 1.5 * exact["exact_match_rate_holdout"] + 0.001:
        return _WARN, "more copies than chance"
    return _OK, "at chance level"


def _dcr_level(share: float) -> tuple[str, str]:
    if share > 0.6:
        return _WARN, "synthetic rows sit close to training rows"
    if share > 0.53:
        return _NOTE, "slightly closer to training rows"
    return _OK, "no memorisation signal"


# =========================================================================== sections
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:36px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6475;margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:14px;margin:18px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px}
.card h3{margin:0 0 6px;font-size:1em;color:#39414f}.big{font-size:1.5em;font-weight:600}
.card p{margin:4px 0;font-size:.92em}
.guarantee{background:#eef6f0;border:1px solid #b9dcc3;border-radius:8px;padding:12px 16px}
.guarantee.none{background:#fff6e8;border-color:#f0d3a0}
.note{font-size:.88em;color:#5b6475}
table{border-collapse:collapse;background:#fff;margin:10px 0;font-size:.9em}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:.8em;font-weight:600}
.badge.ok{background:#d8f0df;color:#1d6b35}.badge.note{background:#fdf0d2;color:#7a5300}
.badge.warn{background:#fadbd8;color:#8f1d14}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.heatmaps figure.plot{flex:1 1 30%;min-width:300px}.heatmaps svg.plot-svg{width:100%}
figure.plot{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0;padding:6px}
figure.plot figcaption{font-size:.8em;color:#5b6475;max-width:420px}
svg.plot-svg{display:block;max-width:100%;height:auto}
code{background:#eef0f4;padding:0 3px;border-radius:3px}
"""


def _summary_section(r: dict[str, Any]) -> str:
    fid, util, priv = r["fidelity"], r["utility"], r["privacy"]
    base = fid.get("baseline_holdout")
    base_1 = f" (two real samples: {_num(base['mean_tvd_1way'])})" if base else ""
    base_2 = f" (two real samples: {_num(base['mean_tvd_2way'])})" if base else ""
    base_a = f" (two real samples: {_num(base['association_similarity'])})" if base else ""
    cards = [
        f"""<div class="card"><h3>Fidelity</h3>
<div class="big">{_num(1 - fid['mean_tvd_1way'])}</div>
<p>column-distribution score (1 = identical; 1 &minus; mean TVD {_num(fid['mean_tvd_1way'])}{base_1})</p>
<p>pairs of columns: mean 2-way TVD {_num(fid['two_way']['mean_tvd'])}{base_2}</p>
<p>association similarity {_num(fid['associations']['similarity'])}{base_a}</p></div>"""
    ]
    if "models" in util:
        best = max(util["models"], key=lambda m: m["real"].get("auc", 0))
        tstr = best["synthetic"].get("auc")
        ratio = util.get("mean_auc_ratio")
        cards.append(f"""<div class="card"><h3>Utility (predicting {_e(util['target'])})</h3>
<div class="big">{_pct(ratio, 0) if ratio is not None else 'n/a'}</div>
<p>of the real data's predictive power kept (mean AUC ratio, synthetic-trained / real-trained)</p>
<p>{_e(best['model'])}: AUC {_num(tstr)} trained on synthetic vs {_num(best['real'].get('auc'))} on real</p></div>""")
    else:
        cards.append(f"""<div class="card"><h3>Utility</h3><p>not measured: {_e(util.get('skipped', ''))}</p></div>""")
    mia = priv["membership_inference"]
    exact, dcr = priv["exact_copies"], priv["dcr"]
    level, text = _privacy_level(r)
    c_level, c_text = _copy_level(exact)
    d_level, d_text = _dcr_level(dcr["share_closer_to_train"])
    if "strongest" in mia:
        s = mia["strongest"]
        attack_line = (f"<div class=\"big\">AUC {_num(s['auc'])}</div><p>strongest membership attack "
                       f"({_e(s['attack'])}), 95 % CI {_ci(s['auc_ci95'])}; 0.5 = guessing {_badge(level, text)}</p>"
                       f"<p>true-positive rate at 1 % false positives: {_pct(s['tpr_at_1pct_fpr'])} "
                       f"(guessing: 1.0 %)</p>")
    else:
        attack_line = f"<p>membership attacks not run: {_e(mia.get('skipped', ''))}</p>"
    cards.append(f"""<div class="card"><h3>Privacy (empirical)</h3>{attack_line}
<p>exact copies of training rows: {_pct(exact['exact_copy_rate'], 2)}; real holdout rows matched at
{_pct(exact['exact_match_rate_holdout'], 2)} by chance {_badge(c_level, c_text)}</p>
<p>{_pct(dcr['share_closer_to_train'])} of synthetic rows are closer to a training row than to a holdout
row (50 % expected) {_badge(d_level, d_text)}</p></div>""")
    return f"""<section id="summary"><h2>Summary</h2><div class="cards">{''.join(cards)}</div>
{_guarantee_block(r)}
<p class="note">This report contains statistics of the real data (histograms, category shares,
associations, distances). Share it only with people allowed to see such statistics of the real data.
The badges are rules of thumb, not pass/fail criteria.</p></section>"""


def _guarantee_block(r: dict[str, Any]) -> str:
    g = r.get("guarantee")
    if not g:
        return ("<div class=\"guarantee none\"><strong>No formal privacy guarantee was supplied.</strong> "
                "The empirical results in this report are then the only privacy evidence, and empirical "
                "attacks can only reveal leakage, never prove there is none.</div>")
    cmp = r["privacy"].get("compared_with_guarantee", {})
    verdict = ""
    if cmp.get("consistent") is True:
        verdict = f"<p>{_badge(_OK, 'consistent')} {_e(cmp['explanation'])}</p>"
    elif cmp.get("consistent") is False:
        verdict = f"<p>{_badge(_WARN, 'conflict')} {_e(cmp['explanation'])}</p>"
    rows = "".join(f"<tr><td>{_e(c['client'])}</td><td class=\"n\">{c['epsilon']:.4g}</td>"
                   f"<td class=\"n\">{c['delta']:.3g}</td></tr>" for c in g["clients"])
    return f"""<div class="guarantee"><p><strong>Differential-privacy guarantee.</strong> {_e(g['statement'])}</p>
<table><tr><th>institution</th><th>epsilon</th><th>delta</th></tr>{rows}</table>{verdict}</div>"""


def _fidelity_section(r: dict[str, Any]) -> str:
    fid = r["fidelity"]
    rows = []
    for c in fid["columns"]:
        rows.append(
            f"<tr><td>{_e(c['name'])}</td><td>{_e(c['type'])}</td><td class=\"n\">{_num(c['ks'])}</td>"
            f"<td class=\"n\">{_num(c['tvd'])}</td><td>{_e(c['tvd_method'])}</td>"
            f"<td class=\"n\">{_pct(c['missing_real'])}</td><td class=\"n\">{_pct(c['missing_synthetic'])}</td></tr>")
    plots = []
    for c in fid["columns"]:
        caption = ("histogram on the public bounds' scale; shares of all rows, missing values listed in the legend"
                   if c["plot"]["kind"] == "histogram" else "share of rows per category (largest first)")
        plots.append(f'<figure class="plot column-plot" data-column="{_e(c["name"])}">{_column_svg(c)}'
                     f"<figcaption>{_e(c['name'])}: {caption}</figcaption></figure>")
    a = fid["associations"]
    heat = [
        _heatmap_svg(a["real"], a["columns"], "Real", diverging=True),
        _heatmap_svg(a["synthetic"], a["columns"], "Synthetic", diverging=True),
        _heatmap_svg(a["abs_difference"], a["columns"], "|Real - Synthetic|", diverging=False),
    ]
    heat_html = "".join(f'<figure class="plot heatmap" data-kind="{k}">{s}</figure>'
                        for k, s in zip(("real", "synthetic", "difference"), heat, strict=True))
    worst = "".join(f"<tr><td>{_e(p['columns'][0])} &times; {_e(p['columns'][1])}</td>"
                    f"<td class=\"n\">{_num(p['tvd'])}</td></tr>" for p in fid["two_way"]["worst_pairs"])
    base = fid.get("baseline_holdout")
    base_row = ""
    if base:
        base_row = (f"<tr><td>real holdout vs training rows ({base['rows']} rows)</td>"
                    f"<td class=\"n\">{_num(base['mean_tvd_1way'])}</td><td class=\"n\">{_num(base['mean_ks'])}</td>"
                    f"<td class=\"n\">{_num(base['mean_tvd_2way'])}</td>"
                    f"<td class=\"n\">{_num(base['association_similarity'])}</td></tr>")
    return f"""<section id="fidelity"><h2>Fidelity</h2>
<table><tr><th>comparison</th><th>mean 1-way TVD</th><th>mean KS (numericals)</th><th>mean 2-way TVD</th>
<th>association similarity</th></tr>
<tr><td>synthetic vs training rows</td><td class="n">{_num(fid['mean_tvd_1way'])}</td>
<td class="n">{_num(fid['mean_ks'])}</td><td class="n">{_num(fid['two_way']['mean_tvd'])}</td>
<td class="n">{_num(fid['associations']['similarity'])}</td></tr>{base_row}</table>
<p class="note">Distances: 0 = identical distributions, 1 = no overlap. The holdout row shows what two
samples of the same real population give; a synthesizer cannot be expected to beat it by much.</p>
<h3>Per column</h3>
<table><tr><th>column</th><th>type</th><th>KS</th><th>TVD</th><th>TVD computed on</th><th>missing (real)</th>
<th>missing (synthetic)</th></tr>{''.join(rows)}</table>
<div class="grid">{''.join(plots)}</div>
<h3>Pairs of columns</h3>
<p>Mean total variation distance between the joint distributions of all {fid['two_way']['n_pairs']} column
pairs ({_e(fid['two_way']['numerical_bins'])}): <strong>{_num(fid['two_way']['mean_tvd'])}</strong>
(contingency similarity {_num(fid['two_way']['contingency_similarity'])}). Worst pairs:</p>
<table><tr><th>pair</th><th>2-way TVD</th></tr>{worst}</table>
<h3>Associations</h3>
<p>Strength of association between every two columns: Spearman's rho for two numericals (signed),
bias-corrected Cramér's V for two categoricals, correlation ratio (on ranks) for mixed pairs. Similarity
{_num(a['similarity'])} (1 = identical).</p>
<div class="grid heatmaps">{heat_html}</div></section>"""


def _utility_section(r: dict[str, Any]) -> str:
    u = r["utility"]
    if "models" not in u:
        return f"""<section id="utility"><h2>Utility</h2><p>Not measured: {_e(u.get('skipped', ''))}</p></section>"""
    rows = []
    for m in u["models"]:
        for key, label in (("real", "real training rows (TRTR)"), ("synthetic", "synthetic rows (TSTR)")):
            s = m[key]
            if "error" in s:
                rows.append(f"<tr><td>{_e(m['model'])}</td><td>{label}</td>"
                            f"<td colspan=\"4\">{_e(s['error'])}</td></tr>")
                continue
            ratio = _num(m.get("auc_ratio")) if key == "synthetic" else ""
            rows.append(f"<tr><td>{_e(m['model'])}</td><td>{label}</td><td class=\"n\">{_num(s['auc'])}</td>"
                        f"<td class=\"n\">{_num(s['accuracy'])}</td><td class=\"n\">{_num(s['f1'])}</td>"
                        f"<td class=\"n\">{ratio}</td></tr>")
    pos = (f"F1 and AUC treat <code>{_e(u['positive_class'])}</code> as the positive class."
           if u.get("positive_class") is not None else f"Averaging: {_e(u.get('averaging'))}.")
    return f"""<section id="utility"><h2>Utility</h2>
<p>Models are trained either on the real training rows or on the synthetic rows and both are tested on
the {u['test_rows_holdout']} real holdout rows, which neither saw. Target: <code>{_e(u['target'])}</code>
({_e(u['task'])}). {pos} Always predicting the most common class gives accuracy
{_num(u['majority_class_accuracy'])}.</p>
<table><tr><th>model</th><th>trained on</th><th>ROC AUC</th><th>accuracy</th><th>F1</th>
<th>AUC ratio (TSTR / TRTR)</th></tr>{''.join(rows)}</table></section>"""


def _privacy_section(r: dict[str, Any]) -> str:
    p = r["privacy"]
    exact, dcr, mia = p["exact_copies"], p["dcr"], p["membership_inference"]
    g = r.get("guarantee")
    parts = [f"""<section id="privacy"><h2>Privacy (empirical)</h2>
<h3>Exact copies</h3>
<table><tr><th>synthetic rows identical to</th><th>share</th></tr>
<tr><td>any training row (all {r['meta']['rows']['real']} rows)</td>
<td class="n">{_pct(exact['exact_copy_rate'], 2)}</td></tr>
<tr><td>a training row, among {exact['equal_size_rows']} sampled (same size as the holdout comparison)</td>
<td class="n">{_pct(exact['exact_copy_rate_equal_size'], 2)}</td></tr>
<tr><td>a real holdout row, among {exact['equal_size_rows']} (chance level: never trained on)</td>
<td class="n">{_pct(exact['exact_match_rate_holdout'], 2)}</td></tr></table>
<h3>Distance to closest record</h3>
<table><tr><th>distance from each synthetic row to the nearest</th><th>5th percentile</th><th>median</th>
<th>mean</th></tr>
<tr><td>training row ({dcr['reference_rows']} sampled)</td><td class="n">{_num(dcr['train']['p05'])}</td>
<td class="n">{_num(dcr['train']['median'])}</td><td class="n">{_num(dcr['train']['mean'])}</td></tr>
<tr><td>holdout row ({dcr['reference_rows']} sampled)</td><td class="n">{_num(dcr['holdout']['p05'])}</td>
<td class="n">{_num(dcr['holdout']['median'])}</td><td class="n">{_num(dcr['holdout']['mean'])}</td></tr></table>
<p>{_pct(dcr['share_closer_to_train'])} of {dcr['synthetic_rows_scored']} synthetic rows are closer to a
training row than to a holdout row; without memorisation this is about 50 %.</p>
<div class="grid"><figure class="plot dcr-plot">{_dcr_svg(dcr)}</figure></div>
<h3>Membership-inference attacks</h3>"""]
    if "attacks" not in mia:
        parts.append(f"<p>Not run: {_e(mia.get('skipped', ''))}</p>")
    else:
        bound_head = "<th>allowed by the guarantee</th>" if g else ""
        rows = []
        for a in mia["attacks"]:
            bound = (f"<td class=\"n\">AUC &le; {_num(g['max_auc'])}; TPR &le; {_pct(g['max_tpr_at_1pct_fpr'])}</td>"
                     if g else "")
            rows.append(f"<tr><td>{_e(a['attack'])}<br><span class=\"note\">{_e(a['reference'])}: "
                        f"{_e(a['description'])}</span></td><td class=\"n\">{_num(a['auc'])}</td>"
                        f"<td class=\"n\">{_ci(a['auc_ci95'])}</td><td class=\"n\">{_pct(a['tpr_at_1pct_fpr'])}</td>"
                        f"<td class=\"n\">{_ci(a['tpr_at_1pct_fpr_ci95'], pct=True)}</td>{bound}</tr>")
        parts.append(f"""<p>Each attack is shown {mia['members']} training rows (members) and {mia['nonmembers']}
holdout rows (non-members) and must tell them apart using the synthetic data and {mia['reference_rows']}
other real holdout rows as background knowledge. AUC 0.5 and a true-positive rate of 1 % at 1 % false
positives mean the attack does no better than guessing. Intervals are 95 % bootstrap intervals.</p>
<table><tr><th>attack</th><th>ROC AUC</th><th>95 % CI</th><th>TPR at 1 % FPR</th><th>95 % CI</th>{bound_head}</tr>
{''.join(rows)}</table>
<div class="grid"><figure class="plot roc-plot">{_roc_svg(mia['attacks'], g)}</figure></div>""")
    parts.append("</section>")
    return "".join(parts)


def _meta_section(r: dict[str, Any]) -> str:
    m = r["meta"]
    rows = "".join(f"<tr><td>{_e(k)}</td><td class=\"n\">{v}</td></tr>" for k, v in m["rows"].items())
    times = "".join(f"<tr><td>{_e(k)}</td><td class=\"n\">{_num(v, 2)} s</td></tr>" for k, v in m["seconds"].items())
    libs = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in m["versions"].items())
    return f"""<section id="meta"><h2>About this evaluation</h2>
<div class="grid"><table><tr><th>table</th><th>rows</th></tr>{rows}</table>
<table><tr><th>step</th><th>time</th></tr>{times}</table>
<table><tr><th>library</th><th>version</th></tr>{libs}</table></div>
<p class="note">Random seed {m['seed']}; created {_e(m.get('created_utc', ''))}. Distances use an
embedding built from the public schema only: numericals scaled to [0, 1] by their public bounds
(log scale where declared), one-hot categoricals weighted so a mismatch counts like a full-range
numerical difference, and missing-value indicators.</p></section>"""


def render_html(result: dict[str, Any]) -> str:
    """The full self-contained HTML document for a (JSON-clean) evaluation result."""
    meta = result["meta"]
    title = f"Synthetic data evaluation: {meta.get('table', 'table')}"
    with _rc():
        body = "".join([
            _summary_section(result),
            _fidelity_section(result),
            _utility_section(result),
            _privacy_section(result),
            _meta_section(result),
        ])
    rows = meta["rows"]
    created = meta.get("created_utc") or date.today().isoformat()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<p class="sub">{rows['real']} training rows, {rows['holdout']} holdout rows, {rows['synthetic']} synthetic rows
&middot; {_e(created)}</p>
{body}
</main></body></html>
"""
