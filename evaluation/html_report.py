"""The HTML report: one self-contained page rendered from a (JSON-clean) evaluation result.

Styles inline, plots as inline SVG, no script at all and a Content-Security-Policy that forbids
loading anything, so it reads the same offline, in an air-gapped review room, or as an e-mail
attachment. Every string that comes from the data or the schema (column names, categories,
client ids) is HTML-escaped.
"""

from __future__ import annotations

from datetime import date

from fedsynth.evaluation.formatting import esc, fmt_ci, fmt_num, fmt_pct
from fedsynth.evaluation.jsonable import JsonObject
from fedsynth.evaluation.plots import (
    column_svg,
    dcr_svg,
    heatmap_svg,
    plot_style,
    roc_svg,
)
from fedsynth.evaluation.risks_html import risks_card, risks_section
from fedsynth.evaluation.verdicts import (
    OK,
    WARN,
    badge,
    copy_level,
    dcr_level,
    detection_level,
    privacy_level,
)

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


_REFERENCE_ROWS = (("baseline_no_relations", "no_relations", "no-relations baseline: training columns shuffled separately"),
                   ("baseline_holdout", "holdout", "real holdout vs training rows"))
"""(fidelity key, detection key, label) of the reference tables every synthetic score is shown next to."""


def _references(fid: JsonObject, key: str, no_relations: bool = True) -> str:
    """`` · no-relations baseline x · real holdout y`` for one headline number (those computed; the
    baseline is left out of 1-way numbers, where it is 0 by construction)."""
    refs = (("baseline_no_relations", "no-relations baseline"),) if no_relations else ()
    parts = [f" &middot; {label} {fmt_num(fid[ref][key])}"
             for ref, label in (*refs, ("baseline_holdout", "real holdout")) if ref in fid]
    return "".join(parts)


def _strong_pairs_line(fid: JsonObject) -> str:
    pairs = fid.get("strong_pairs", [])
    if not pairs:
        return "<p>no pair of columns has a strong real association (&ge; 0.5)</p>"
    kept = sum(p["kept"] for p in pairs)
    return (f"<p>strong relations kept: <strong>{kept} of {len(pairs)}</strong> (pairs with real association "
            f"&ge; 0.5 reproduced within 0.1)</p>")


def _detection_card(r: JsonObject) -> str:
    det = r.get("detection")
    if det is None:
        return ""
    auc = det["synthetic"]["auc"]
    level, text = detection_level(auc)
    return f"""<div class="card detection"><h3>Detection (real or synthetic?)</h3>
<div class="big">AUC {fmt_num(auc)}</div>
<p>a classifier tells synthetic rows from real ones with this ROC AUC; 0.5 = indistinguishable,
1 = every synthetic row gives itself away {badge(level, text)}</p>
<p>synthetic {fmt_num(auc)} &middot; no-relations baseline {fmt_num(det['no_relations']['auc'])} &middot;
real holdout {fmt_num(det['holdout']['auc'])}</p>
<p>detection score (SDMetrics, 1 = indistinguishable): {fmt_num(det['synthetic']['score'])}</p></div>"""


def _summary_section(r: JsonObject) -> str:
    fid, util, priv = r["fidelity"], r["utility"], r["privacy"]
    cards = [
        f"""<div class="card"><h3>Fidelity</h3>
<div class="big">{fmt_num(1 - fid['mean_tvd_1way'])}</div>
<p>column-distribution score (1 = identical; 1 &minus; mean TVD {fmt_num(fid['mean_tvd_1way'])}{_references(fid, 'mean_tvd_1way', no_relations=False)})</p>
<p>pairs of columns: mean 2-way TVD {fmt_num(fid['two_way']['mean_tvd'])}{_references(fid, 'mean_tvd_2way')}</p>
<p class="association-line">association similarity: synthetic {fmt_num(fid['associations']['similarity'])}{_references(fid, 'association_similarity')}</p>
{_strong_pairs_line(fid)}
<p class="note">No-relations baseline: the training columns shuffled separately (right marginals, no relation kept).
A score near it means little more than the marginals was kept.</p></div>""",
        _detection_card(r),
    ]
    if "models" in util:
        best = max(util["models"], key=lambda m: m["real"].get("auc", 0))
        tstr = best["synthetic"].get("auc")
        ratio = util.get("mean_auc_ratio")
        cards.append(f"""<div class="card"><h3>Utility (predicting {esc(util['target'])})</h3>
<div class="big">{fmt_pct(ratio, 0) if ratio is not None else 'n/a'}</div>
<p>of the real data's predictive power kept (mean AUC ratio, synthetic-trained / real-trained)</p>
<p>{esc(best['model'])}: AUC {fmt_num(tstr)} trained on synthetic vs {fmt_num(best['real'].get('auc'))} on real</p></div>""")
    else:
        cards.append(f"""<div class="card"><h3>Utility</h3><p>not measured: {esc(util.get('skipped', ''))}</p></div>""")
    mia = priv["membership_inference"]
    exact, dcr = priv["exact_copies"], priv["dcr"]
    level, text = privacy_level(r)
    c_level, c_text = copy_level(exact)
    d_level, d_text = dcr_level(dcr["share_closer_to_train"])
    if "strongest" in mia:
        s = mia["strongest"]
        attack_line = (f"<div class=\"big\">AUC {fmt_num(s['auc'])}</div><p>strongest membership attack "
                       f"({esc(s['attack'])}), 95 % CI {fmt_ci(s['auc_ci95'])}; 0.5 = guessing {badge(level, text)}</p>"
                       f"<p>true-positive rate at 1 % false positives: {fmt_pct(s['tpr_at_1pct_fpr'])} "
                       f"(guessing: 1.0 %)</p>")
    else:
        attack_line = f"<p>membership attacks not run: {esc(mia.get('skipped', ''))}</p>"
    cards.append(f"""<div class="card"><h3>Privacy (empirical)</h3>{attack_line}
<p>exact copies of training rows: {fmt_pct(exact['exact_copy_rate'], 2)}; real holdout rows matched at
{fmt_pct(exact['exact_match_rate_holdout'], 2)} by chance {badge(c_level, c_text)}</p>
<p>{fmt_pct(dcr['share_closer_to_train'])} of synthetic rows are closer to a training row than to a holdout
row (50 % expected) {badge(d_level, d_text)}</p></div>""")
    cards.append(risks_card(r))
    return f"""<section id="summary"><h2>Summary</h2><div class="cards">{''.join(cards)}</div>
{_guarantee_block(r)}
<p class="note">This report contains statistics of the real data (histograms, category shares,
associations, distances). Share it only with people allowed to see such statistics of the real data.
The badges are rules of thumb, not pass/fail criteria.</p></section>"""


def _guarantee_block(r: JsonObject) -> str:
    g = r.get("guarantee")
    if not g:
        return ("<div class=\"guarantee none\"><strong>No formal privacy guarantee was supplied.</strong> "
                "The empirical results in this report are then the only privacy evidence, and empirical "
                "attacks can only reveal leakage, never prove there is none.</div>")
    cmp = r["privacy"].get("compared_with_guarantee", {})
    verdict = ""
    if cmp.get("consistent") is True:
        verdict = f"<p>{badge(OK, 'consistent')} {esc(cmp['explanation'])}</p>"
    elif cmp.get("consistent") is False:
        verdict = f"<p>{badge(WARN, 'conflict')} {esc(cmp['explanation'])}</p>"
    rows = "".join(f"<tr><td>{esc(c['client'])}</td><td class=\"n\">{c['epsilon']:.4g}</td>"
                   f"<td class=\"n\">{c['delta']:.3g}</td></tr>" for c in g["clients"])
    return f"""<div class="guarantee"><p><strong>Differential-privacy guarantee.</strong> {esc(g['statement'])}</p>
<table><tr><th>institution</th><th>epsilon</th><th>delta</th></tr>{rows}</table>{verdict}</div>"""


def _fidelity_section(r: JsonObject) -> str:
    fid = r["fidelity"]
    rows = []
    for c in fid["columns"]:
        rows.append(
            f"<tr><td>{esc(c['name'])}</td><td>{esc(c['type'])}</td><td class=\"n\">{fmt_num(c['ks'])}</td>"
            f"<td class=\"n\">{fmt_num(c['tvd'])}</td><td>{esc(c['tvd_method'])}</td>"
            f"<td class=\"n\">{fmt_pct(c['missing_real'])}</td><td class=\"n\">{fmt_pct(c['missing_synthetic'])}</td></tr>")
    plots = []
    for c in fid["columns"]:
        caption = ("histogram on the public bounds' scale; shares of all rows, missing values listed in the legend"
                   if c["plot"]["kind"] == "histogram" else "share of rows per category (largest first)")
        plots.append(f'<figure class="plot column-plot" data-column="{esc(c["name"])}">{column_svg(c)}'
                     f"<figcaption>{esc(c['name'])}: {caption}</figcaption></figure>")
    a = fid["associations"]
    heat = [
        heatmap_svg(a["real"], a["columns"], "Real", diverging=True),
        heatmap_svg(a["synthetic"], a["columns"], "Synthetic", diverging=True),
        heatmap_svg(a["abs_difference"], a["columns"], "|Real - Synthetic|", diverging=False),
    ]
    heat_html = "".join(f'<figure class="plot heatmap" data-kind="{k}">{s}</figure>'
                        for k, s in zip(("real", "synthetic", "difference"), heat, strict=True))
    worst = "".join(f"<tr><td>{esc(p['columns'][0])} &times; {esc(p['columns'][1])}</td>"
                    f"<td class=\"n\">{fmt_num(p['tvd'])}</td></tr>" for p in fid["two_way"]["worst_pairs"])
    det = r.get("detection", {})
    compared = [("synthetic vs training rows", fid, fid["two_way"]["mean_tvd"], fid["associations"]["similarity"],
                 det.get("synthetic"))]
    for key, det_key, label in _REFERENCE_ROWS:
        if key in fid:
            b = fid[key]
            compared.append((f"{label} ({b['rows']} rows)", b, b["mean_tvd_2way"], b["association_similarity"],
                             det.get(det_key)))
    comparison = "".join(
        f"<tr><td>{label}</td><td class=\"n\">{fmt_num(v['mean_tvd_1way'])}</td><td class=\"n\">{fmt_num(v['mean_ks'])}</td>"
        f"<td class=\"n\">{fmt_num(tvd2)}</td><td class=\"n\">{fmt_num(sim)}</td>"
        f"<td class=\"n\">{fmt_num(d['auc'] if d else None)}</td></tr>" for label, v, tvd2, sim, d in compared)
    strong = "".join(
        f"<tr><td>{esc(p['columns'][0])} &times; {esc(p['columns'][1])}</td><td>{esc(p['measure'])}</td>"
        f"<td class=\"n\">{fmt_num(p['real'])}</td><td class=\"n\">{fmt_num(p['synthetic'])}</td>"
        f"<td class=\"n\">{fmt_num(p.get('no_relations'))}</td><td class=\"n\">{fmt_num(p.get('holdout'))}</td>"
        f"<td>{badge(OK, 'kept') if p['kept'] else badge(WARN, 'lost')}</td></tr>" for p in fid.get("strong_pairs", []))
    strong_table = (f"""<table class="strong-pairs"><tr><th>pair</th><th>measure</th><th>real</th><th>synthetic</th>
<th>no-relations baseline</th><th>real holdout</th><th>within 0.1</th></tr>{strong}</table>""" if strong
                    else "<p>No pair has a real association of 0.5 or more.</p>")
    return f"""<section id="fidelity"><h2>Fidelity</h2>
<table class="comparison"><tr><th>comparison</th><th>mean 1-way TVD</th><th>mean KS (numericals)</th><th>mean 2-way TVD</th>
<th>association similarity</th><th>detection AUC</th></tr>{comparison}</table>
<p class="note">Distances: 0 = identical distributions, 1 = no overlap. The holdout row shows what two
samples of the same real population give; a synthesizer cannot be expected to beat it by much. The
no-relations row is the training rows with every column shuffled separately: perfect marginals and no
relation at all, so a synthetic score near it means the relations between columns were not kept.</p>
<h3>Detection</h3>
<p>{esc(det.get('description', 'not measured'))}. A classifier ({esc(det.get('model', ''))}) told the synthetic
rows from real training rows with ROC AUC <strong>{fmt_num(det.get('synthetic', {}).get('auc'))}</strong>; two real
samples give {fmt_num(det.get('holdout', {}).get('auc'))}, columns that keep no relation
{fmt_num(det.get('no_relations', {}).get('auc'))}.</p>
<h3>Per column</h3>
<table><tr><th>column</th><th>type</th><th>KS</th><th>TVD</th><th>TVD computed on</th><th>missing (real)</th>
<th>missing (synthetic)</th></tr>{''.join(rows)}</table>
<div class="grid">{''.join(plots)}</div>
<h3>Pairs of columns</h3>
<p>Mean total variation distance between the joint distributions of all {fid['two_way']['n_pairs']} column
pairs ({esc(fid['two_way']['numerical_bins'])}): <strong>{fmt_num(fid['two_way']['mean_tvd'])}</strong>
(contingency similarity {fmt_num(fid['two_way']['contingency_similarity'])}). Worst pairs:</p>
<table><tr><th>pair</th><th>2-way TVD</th></tr>{worst}</table>
<h3>Associations</h3>
<p>Strength of association between every two columns: Spearman's rho for two numericals (signed),
bias-corrected Cramér's V for two categoricals, correlation ratio (on ranks) for mixed pairs. Similarity
{fmt_num(a['similarity'])} (1 = identical).</p>
<h3>Strong relations</h3>
<p>Every pair of columns with a real association of at least 0.5, strongest first, and the value each table
gives it. A mean over all pairs hides a lost strong relation among many weak ones.</p>
{strong_table}
<div class="grid heatmaps">{heat_html}</div></section>"""


def _utility_section(r: JsonObject) -> str:
    u = r["utility"]
    if "models" not in u:
        return f"""<section id="utility"><h2>Utility</h2><p>Not measured: {esc(u.get('skipped', ''))}</p></section>"""
    rows = []
    for m in u["models"]:
        for key, label in (("real", "real training rows (TRTR)"), ("synthetic", "synthetic rows (TSTR)")):
            s = m[key]
            if "error" in s:
                rows.append(f"<tr><td>{esc(m['model'])}</td><td>{label}</td>"
                            f"<td colspan=\"4\">{esc(s['error'])}</td></tr>")
                continue
            ratio = fmt_num(m.get("auc_ratio")) if key == "synthetic" else ""
            rows.append(f"<tr><td>{esc(m['model'])}</td><td>{label}</td><td class=\"n\">{fmt_num(s['auc'])}</td>"
                        f"<td class=\"n\">{fmt_num(s['accuracy'])}</td><td class=\"n\">{fmt_num(s['f1'])}</td>"
                        f"<td class=\"n\">{ratio}</td></tr>")
    pos = (f"F1 and AUC treat <code>{esc(u['positive_class'])}</code> as the positive class."
           if u.get("positive_class") is not None else f"Averaging: {esc(u.get('averaging'))}.")
    return f"""<section id="utility"><h2>Utility</h2>
<p>Models are trained either on the real training rows or on the synthetic rows and both are tested on
the {u['test_rows_holdout']} real holdout rows, which neither saw. Target: <code>{esc(u['target'])}</code>
({esc(u['task'])}). {pos} Always predicting the most common class gives accuracy
{fmt_num(u['majority_class_accuracy'])}.</p>
<table><tr><th>model</th><th>trained on</th><th>ROC AUC</th><th>accuracy</th><th>F1</th>
<th>AUC ratio (TSTR / TRTR)</th></tr>{''.join(rows)}</table></section>"""


def _privacy_section(r: JsonObject) -> str:
    p = r["privacy"]
    exact, dcr, mia = p["exact_copies"], p["dcr"], p["membership_inference"]
    g = r.get("guarantee")
    parts = [f"""<section id="privacy"><h2>Privacy (empirical)</h2>
<h3>Exact copies</h3>
<table><tr><th>synthetic rows identical to</th><th>share</th></tr>
<tr><td>any training row (all {r['meta']['rows']['real']} rows)</td>
<td class="n">{fmt_pct(exact['exact_copy_rate'], 2)}</td></tr>
<tr><td>a training row, among {exact['equal_size_rows']} sampled (same size as the holdout comparison)</td>
<td class="n">{fmt_pct(exact['exact_copy_rate_equal_size'], 2)}</td></tr>
<tr><td>a real holdout row, among {exact['equal_size_rows']} (chance level: never trained on)</td>
<td class="n">{fmt_pct(exact['exact_match_rate_holdout'], 2)}</td></tr></table>
<h3>Distance to closest record</h3>
<table><tr><th>distance from each synthetic row to the nearest</th><th>5th percentile</th><th>median</th>
<th>mean</th></tr>
<tr><td>training row ({dcr['reference_rows']} sampled)</td><td class="n">{fmt_num(dcr['train']['p05'])}</td>
<td class="n">{fmt_num(dcr['train']['median'])}</td><td class="n">{fmt_num(dcr['train']['mean'])}</td></tr>
<tr><td>holdout row ({dcr['reference_rows']} sampled)</td><td class="n">{fmt_num(dcr['holdout']['p05'])}</td>
<td class="n">{fmt_num(dcr['holdout']['median'])}</td><td class="n">{fmt_num(dcr['holdout']['mean'])}</td></tr></table>
<p>{fmt_pct(dcr['share_closer_to_train'])} of {dcr['synthetic_rows_scored']} synthetic rows are closer to a
training row than to a holdout row; without memorisation this is about 50 %.</p>
<div class="grid"><figure class="plot dcr-plot">{dcr_svg(dcr)}</figure></div>
<h3>Membership-inference attacks</h3>"""]
    if "attacks" not in mia:
        parts.append(f"<p>Not run: {esc(mia.get('skipped', ''))}</p>")
    else:
        bound_head = "<th>allowed by the guarantee</th>" if g else ""
        rows = []
        for a in mia["attacks"]:
            bound = (f"<td class=\"n\">AUC &le; {fmt_num(g['max_auc'])}; TPR &le; {fmt_pct(g['max_tpr_at_1pct_fpr'])}</td>"
                     if g else "")
            rows.append(f"<tr><td>{esc(a['attack'])}<br><span class=\"note\">{esc(a['reference'])}: "
                        f"{esc(a['description'])}</span></td><td class=\"n\">{fmt_num(a['auc'])}</td>"
                        f"<td class=\"n\">{fmt_ci(a['auc_ci95'])}</td><td class=\"n\">{fmt_pct(a['tpr_at_1pct_fpr'])}</td>"
                        f"<td class=\"n\">{fmt_ci(a['tpr_at_1pct_fpr_ci95'], pct=True)}</td>{bound}</tr>")
        parts.append(f"""<p>Each attack is shown {mia['members']} training rows (members) and {mia['nonmembers']}
holdout rows (non-members) and must tell them apart using the synthetic data and {mia['reference_rows']}
other real holdout rows as background knowledge. AUC 0.5 and a true-positive rate of 1 % at 1 % false
positives mean the attack does no better than guessing. Intervals are 95 % bootstrap intervals.</p>
<table><tr><th>attack</th><th>ROC AUC</th><th>95 % CI</th><th>TPR at 1 % FPR</th><th>95 % CI</th>{bound_head}</tr>
{''.join(rows)}</table>
<div class="grid"><figure class="plot roc-plot">{roc_svg(mia['attacks'], g)}</figure></div>""")
    parts.append("</section>")
    return "".join(parts)


def _meta_section(r: JsonObject) -> str:
    m = r["meta"]
    rows = "".join(f"<tr><td>{esc(k)}</td><td class=\"n\">{v}</td></tr>" for k, v in m["rows"].items())
    times = "".join(f"<tr><td>{esc(k)}</td><td class=\"n\">{fmt_num(v, 2)} s</td></tr>" for k, v in m["seconds"].items())
    libs = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in m["versions"].items())
    return f"""<section id="meta"><h2>About this evaluation</h2>
<div class="grid"><table><tr><th>table</th><th>rows</th></tr>{rows}</table>
<table><tr><th>step</th><th>time</th></tr>{times}</table>
<table><tr><th>library</th><th>version</th></tr>{libs}</table></div>
<p class="note">Random seed {m['seed']}; created {esc(m.get('created_utc', ''))}. Distances use an
embedding built from the public schema only: numericals scaled to [0, 1] by their public bounds
(log scale where declared), one-hot categoricals weighted so a mismatch counts like a full-range
numerical difference, and missing-value indicators.</p></section>"""


def render_html(result: JsonObject) -> str:
    """The full self-contained HTML document for a (JSON-clean) evaluation result."""
    meta = result["meta"]
    title = f"Synthetic data evaluation: {meta.get('table', 'table')}"
    with plot_style():
        body = "".join([
            _summary_section(result),
            _fidelity_section(result),
            _utility_section(result),
            _privacy_section(result),
            risks_section(result),
            _meta_section(result),
        ])
    rows = meta["rows"]
    created = meta.get("created_utc") or date.today().isoformat()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{esc(title)}</h1>
<p class="sub">{rows['real']} training rows, {rows['holdout']} holdout rows, {rows['synthetic']} synthetic rows
&middot; {esc(created)}</p>
{body}
</main></body></html>
"""
