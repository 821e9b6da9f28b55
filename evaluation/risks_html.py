"""The HTML of the re-identification risks (:mod:`fedsynth.evaluation.risks`): a summary card and a section."""

from __future__ import annotations

from fedsynth.evaluation.formatting import esc, fmt_pct
from fedsynth.evaluation.jsonable import JsonObject
from fedsynth.evaluation.verdicts import OK, WARN, badge


def _ci(ci: list[float]) -> str:
    return f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def _verdict(e: JsonObject) -> str:
    return badge(WARN, "added risk") if e["added_risk_ci95"][0] > 0 else badge(OK, "none measured")


def _estimates(risks: JsonObject) -> list[JsonObject]:
    return [*risks["attribute_inference"], *(risks[k] for k in ("singling_out", "linkability") if k in risks)]


def risks_card(r: JsonObject) -> str:
    """The summary card: the largest added risk and how many attacks measured one."""
    risks = r.get("risks")
    if not risks or not _estimates(risks):
        return ""
    estimates = _estimates(risks)
    top = max(estimates, key=lambda e: e["added_risk"])
    measured = sum(e["added_risk_ci95"][0] > 0 for e in estimates)
    return f"""<div class="card risks-card"><h3>Re-identification risks</h3>
<div class="big">{fmt_pct(top['added_risk'])}</div>
<p>largest risk added over the holdout baseline ({esc(top['attack'])}), simultaneous 95 % CI {_ci(top['added_risk_ci95'])}
{_verdict(top)}</p>
<p>{measured} of {len(estimates)} attacks (inference, singling out, linkability) measured an added risk</p></div>"""


def risks_section(r: JsonObject) -> str:
    """Every attack's success on training and holdout rows, its added risk and its plain sentence."""
    risks = r.get("risks")
    if not risks:
        return ""
    rows = "".join(
        f"<tr class=\"risk\" data-attack=\"{esc(e['attack'])}\"><td>{esc(e['attack'])}<br>"
        f"<span class=\"note\">{esc(e['detail'])}</span></td><td class=\"n\">{fmt_pct(e['train_success'])}</td>"
        f"<td class=\"n\">{fmt_pct(e['control_success'])}</td><td class=\"n\">{fmt_pct(e['added_risk'])}</td>"
        f"<td class=\"n\">{_ci(e['added_risk_ci95'])}</td><td>{_verdict(e)}</td></tr>" for e in _estimates(risks))
    sentences = "".join(f"<li>{esc(e['sentence'])}</li>" for e in _estimates(risks))
    skipped = "".join(f"<p>{esc(k.removesuffix('_skipped').replace('_', ' '))}: not run, {esc(v)}.</p>"
                      for k, v in risks.items() if k.endswith("_skipped"))
    g = r.get("guarantee")
    beside = (f"<p class=\"guarantee\"><strong>Beside the formal guarantee:</strong> {esc(g['statement'])}</p>" if g
              else "<p class=\"note\">No formal guarantee was supplied; these attacks are the only evidence.</p>")
    table = (f"""<table class="risks"><tr><th>attack</th><th>success on training rows</th><th>success on holdout rows</th>
<th>added risk</th><th>simultaneous 95 % CI</th><th></th></tr>{rows}</table><ul>{sentences}</ul>""" if rows else "")
    return f"""<section id="risks"><h2>Re-identification risks</h2>
<p>The three risks of the EU's anonymisation guidance, measured as in Anonymeter: each attack uses only the
synthetic rows and what it is told about a real person, and runs on {risks['targets']} training rows and, as the
control, on as many holdout rows the synthesizer never saw. The control's success is what the population reveals
anyway; the <em>added risk</em> (train &minus; control) / (1 &minus; control) is what the synthetic data give away
about the people they were made from (0 = nothing, 1 = everyone). Intervals are simultaneous: all of them hold together with 95 % confidence (each is a Bonferroni-widened Jeffreys interval), so a synthesizer that leaks nothing has every one of them include 0 in 19 reports out of 20.</p>
{table}{skipped}{beside}
<p class="note">Like the membership attacks, these can show leakage but never prove there is none.</p></section>"""
