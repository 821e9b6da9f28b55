"""Render report.html in headless Chromium and check that a reader actually sees the plots.

String checks on the HTML cannot tell whether a browser draws it (a malformed inline SVG, an
id clash or a blocked resource renders as an empty box), so this test loads the file as a
reader would, offline, and inspects both the rendered DOM and a screenshot. Skipped when
``/usr/bin/chromium`` is missing (CI installs Debian's ``chromium`` package).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsynth.common.data.schema import Schema
from fedsynth.common.data.tables import load_table
from fedsynth.evaluation import evaluate, write_report
from fedsynth.evaluation.plots import REAL_COLOUR, SYN_COLOUR

CHROMIUM = Path("/usr/bin/chromium")
DATA = Path(__file__).resolve().parents[1] / "fedsynth" / "data"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    schema = Schema.load(DATA / "adult.schema.json")
    df = load_table(DATA / "adult.csv.gz", schema)
    perm = np.random.default_rng(11).permutation(len(df))
    real, holdout, synthetic = (df.iloc[perm[a:b]].reset_index(drop=True)
                                for a, b in ((0, 1500), (1500, 2500), (2500, 4000)))
    result = evaluate(real, holdout, synthetic, schema, target="income", seed=0,
                      guarantee={"clients": [{"client": "0", "epsilon": 2.0, "delta": 1e-5}]})
    _, html_path = write_report(result, tmp_path_factory.mktemp("report"))
    return result, html_path


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_rendered_dom_contains_the_plots(report, tmp_path):
    result, html_path = report
    proc = _chromium(tmp_path, "--dump-dom", html_path.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    n_cols = len(result["fidelity"]["columns"])
    assert len(re.findall(r'<figure class="plot column-plot"', dom)) == n_cols
    assert len(re.findall(r'<svg[^>]*class="plot-svg"', dom)) == n_cols + 5
    assert len(re.findall(r'class="plot heatmap"', dom)) == 3
    # plot content survived parsing: bars and curves are <path> elements, each heatmap embeds
    # its cells (and its colour bar) as a data-URI <image>, labels stay text
    assert dom.count("<path") > 250
    assert len(re.findall(r'<image[^>]*href="data:image/png;base64,', dom)) >= 3
    assert dom.count("<text") > 500
    assert "Membership-inference ROC" in dom and "Distance to closest record" in dom
    assert "Differential-privacy guarantee" in dom
    # the re-identification risks: one row per attack (inference of the target by nearest row and by
    # model, singling out, linkability)
    risks = re.search(r'<section id="risks">(.*?)</section>', dom, re.DOTALL).group(1)
    assert risks.count('<tr class="risk"') == 4 and "Beside the formal guarantee" in risks
    assert result["risks"]["linkability"]["sentence"].split(":")[0] in risks
    # the references and the detection verdict survive rendering, next to the synthetic numbers
    summary = result["summary"]
    assert "Detection (real or synthetic?)" in dom
    assert f"no-relations baseline {summary['association_similarity_no_relations']:.3f}" in dom
    comparison = re.search(r'<table class="comparison">(.*?)</table>', dom, re.DOTALL).group(1)
    assert comparison.count("<tr>") == 4 and "no-relations baseline" in comparison and "real holdout" in comparison
    strong = re.search(r'<table class="strong-pairs">(.*?)</table>', dom, re.DOTALL).group(1)
    assert strong.count("<tr>") == 1 + summary["strong_pairs"]


def _share_near(pixels: np.ndarray, hex_colour: str, tol: int = 12) -> float:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return float(np.mean(np.all(np.abs(pixels[..., :3].astype(int) - rgb) <= tol, axis=-1)))


def test_screenshot_shows_real_and_synthetic_plots(report, tmp_path):
    _, html_path = report
    png = tmp_path / "shot.png"
    proc = _chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,3000", html_path.as_uri())
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (3000, 1200)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 500  # text, anti-aliased curves and fills, not a blank page
    # the first screen holds the summary and the first per-column plots, drawn in the report's
    # real (blue) and synthetic (orange) colours
    assert _share_near(pixels, REAL_COLOUR) > 0.002
    assert _share_near(pixels, SYN_COLOUR) > 0.002
