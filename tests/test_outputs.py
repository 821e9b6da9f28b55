"""Output paths (issue 13, item 2): fedsynth never deletes, replaces or hides what it did not write.

For every command with ``--out``: a file or folder fedsynth did not write is refused (with or
without ``--overwrite``) and left exactly as it was; an earlier output of the same command is
replaced only with ``--overwrite``, and the replacement leaves nothing set aside.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from _cli import fedsynth

from fedsynth.common.deploy.credentials import CertificateRequest, generate_node_keys, issue_certificates
from fedsynth.common.errors import FedsynthError
from fedsynth.common.lineage import provenance, read_lineage, sidecar_path, write_synthetic
from fedsynth.common.synthesizer import Synthesizer
from fedsynth.common.data.tables import write_table
from fedsynth.server.deployment_config import CoordinatorOptions, prepare

REPO = Path(__file__).resolve().parents[1]


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _user_folder(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "notes.txt").write_text("my own notes\n")
    (path / "data.csv").write_text("a,b\n1,2\n")
    return _snapshot(path)


def _set_aside(parent: Path) -> list[str]:
    """Anything fedsynth hid or left half-done next to its outputs."""
    return sorted(p.name for p in parent.iterdir() if ".old-" in p.name or ".new-" in p.name or p.suffix == ".tmp")


def _refused(r, path: Path) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(path) in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.fixture()
def train_csv(tmp_path, adult, adult_schema) -> Path:
    p = tmp_path / "train.csv"
    write_table(adult.sample(1000, random_state=5), p, schema=adult_schema)
    return p


# ----------------------------------------------------------------------------- fit / Synthesizer.save
def test_fit_refuses_a_folder_or_file_it_did_not_write(tmp_path, train_csv, adult_paths):
    folder, file = tmp_path / "mine", tmp_path / "model.bin"
    before = _user_folder(folder)
    file.write_bytes(b"not a model")
    for out, overwrite in ((folder, []), (file, ["--overwrite"])):
        r = fedsynth("fit", str(train_csv), "--schema", str(adult_paths[1]), "--epochs", "0.5", "--out", str(out),
                     *overwrite)
        _refused(r, out)
    assert _snapshot(folder) == before and file.read_bytes() == b"not a model"
    assert _set_aside(tmp_path) == []


def test_fit_replaces_its_own_model_only_with_overwrite(tmp_path, train_csv, adult_paths, tiny_model_dir):
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    before = _snapshot(out)
    args = ("fit", str(train_csv), "--schema", str(adult_paths[1]), "--epochs", "0.5", "--pairs", "0",  # no fine-tune
            "--out", str(out))
    r = fedsynth(*args)
    _refused(r, out)
    assert "already holds a fedsynth model folder" in r.stderr and "--overwrite" in r.stderr
    assert _snapshot(out) == before
    r = fedsynth(*args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(_snapshot(out)) == ["synthesizer.json", "weights.pt"]
    new_id = json.loads((out / "synthesizer.json").read_text())["model_id"]
    assert new_id != json.loads(before["synthesizer.json"])["model_id"]
    assert _set_aside(tmp_path) == []


def test_save_follows_the_same_rule(tmp_path, tiny_model_dir):
    synth = Synthesizer.load(tiny_model_dir)
    foreign = tmp_path / "mine"
    before = _user_folder(foreign)
    with pytest.raises(FedsynthError, match="refusing to write there"):
        synth.save(foreign, overwrite=True)
    assert _snapshot(foreign) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    synth.save(empty)  # an empty folder holds nothing to lose
    with pytest.raises(FedsynthError, match="already holds a fedsynth model folder.*overwrite=True"):
        synth.save(empty)
    synth.save(empty, overwrite=True)

    (empty / "README").write_text("added by hand\n")
    kept = _snapshot(empty)
    with pytest.raises(FedsynthError, match=r"also \['README'\], which fedsynth did not write"):
        synth.save(empty, overwrite=True)
    assert _snapshot(empty) == kept
    assert _set_aside(tmp_path) == []


# ----------------------------------------------------------------------------- sample
def test_sample_replaces_only_its_own_tables(tmp_path, tiny_model_dir):
    theirs = tmp_path / "data.csv"
    theirs.write_text("a,b\n1,2\n")
    _refused(fedsynth("sample", str(tiny_model_dir), "--rows", "20", "--out", str(theirs), "--overwrite"), theirs)
    assert theirs.read_text() == "a,b\n1,2\n" and not sidecar_path(theirs).exists()

    ours = tmp_path / "syn.csv"
    synth = Synthesizer.load(tiny_model_dir)
    write_synthetic(synth.sample(20, seed=0), ours, provenance(synth.to_state()[0], 20), schema=synth.schema)
    first = ours.read_bytes()
    r = fedsynth("sample", str(tiny_model_dir), "--rows", "30", "--out", str(ours))
    _refused(r, ours)
    assert "already holds a fedsynth synthetic table" in r.stderr and ours.read_bytes() == first
    assert fedsynth("sample", str(tiny_model_dir), "--rows", "30", "--out", str(ours), "--overwrite").returncode == 0
    assert len(ours.read_text().splitlines()) == 31
    check = read_lineage(ours)
    assert check.file_ok is True and check.ok  # the new sidecar matches the new table
    assert _set_aside(tmp_path) == []


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_refuses_a_folder_it_did_not_write(tmp_path, adult, adult_schema, adult_paths):
    tables = []
    for name, rows in (("r.csv", slice(0, 600)), ("h.csv", slice(600, 900)), ("s.csv", slice(900, 1500))):
        write_table(adult.iloc[rows], tmp_path / name, schema=adult_schema)
        tables.append(str(tmp_path / name))
    out = tmp_path / "reports"
    before = _user_folder(out)
    r = fedsynth("evaluate", "--real", tables[0], "--holdout", tables[1], "--synthetic", tables[2], "--schema",
                 str(adult_paths[1]), "--out", str(out), "--overwrite")
    _refused(r, out)
    assert _snapshot(out) == before


# ----------------------------------------------------------------------------- split / certs / keys
def test_split_replaces_its_own_silos_whole_and_nothing_else(tmp_path):
    foreign = tmp_path / "mine"
    before = _user_folder(foreign)
    _refused(fedsynth("split", "--out", str(foreign), "--clients", "2", "--rows-per-silo", "50", "--overwrite"), foreign)
    assert _snapshot(foreign) == before

    out = tmp_path / "silos"
    assert fedsynth("split", "--out", str(out), "--clients", "3", "--rows-per-silo", "50").returncode == 0
    first = _snapshot(out)
    _refused(fedsynth("split", "--out", str(out), "--clients", "2", "--rows-per-silo", "50"), out)
    assert _snapshot(out) == first
    assert fedsynth("split", "--out", str(out), "--clients", "2", "--rows-per-silo", "50", "--seed", "1",
                    "--overwrite").returncode == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["client-1.csv", "client-2.csv"]  # no stale client-3
    assert _set_aside(tmp_path) == []


def test_certs_and_keys_refuse_folders_they_did_not_write(tmp_path):
    foreign = tmp_path / "mine"
    before = _user_folder(foreign)
    _refused(fedsynth("certs", "--out", str(foreign), "--overwrite"), foreign)
    _refused(fedsynth("keys", "--out", str(foreign), "--name", "a"), foreign)
    assert _snapshot(foreign) == before

    certs = tmp_path / "certs"
    assert fedsynth("certs", "--out", str(certs)).returncode == 0
    ca = (certs / "ca.pem").read_bytes()
    r = fedsynth("certs", "--out", str(certs))
    assert r.returncode == 2 and "refusing to replace a CA" in r.stderr and (certs / "ca.pem").read_bytes() == ca
    assert fedsynth("certs", "--out", str(certs), "--overwrite").returncode == 0
    assert (certs / "ca.pem").read_bytes() != ca

    keys = tmp_path / "keys"
    assert fedsynth("keys", "--out", str(keys), "--name", "a").returncode == 0
    assert fedsynth("keys", "--out", str(keys), "--name", "b").returncode == 0  # pairs are added to the folder
    pub = (keys / "a.pub").read_bytes()
    r = fedsynth("keys", "--out", str(keys), "--name", "a")
    assert r.returncode == 2 and "already exists" in r.stderr and (keys / "a.pub").read_bytes() == pub
    assert fedsynth("keys", "--out", str(keys), "--name", "a", "--overwrite").returncode == 0
    assert (keys / "a.pub").read_bytes() != pub and (keys / "b.pub").is_file()
    assert _set_aside(tmp_path) == []


# ----------------------------------------------------------------------------- simulate / coordinator
def test_simulate_refuses_what_it_did_not_write(tmp_path):
    folder, file = tmp_path / "mine", tmp_path / "run.txt"
    before = _user_folder(folder)
    file.write_text("not a run\n")
    for out in (folder, file):
        _refused(fedsynth("simulate", "--out", str(out), "--rounds", "1", "--overwrite"), out)
    assert _snapshot(folder) == before and file.read_text() == "not a run\n"


def test_coordinator_refuses_an_out_folder_it_did_not_write(tmp_path, adult_paths):
    issue_certificates(CertificateRequest(tmp_path / "certs"))
    pubs = [generate_node_keys(tmp_path / "k", n).public_key for n in ("a", "b")]

    def opts(out: Path) -> CoordinatorOptions:
        return CoordinatorOptions(config=REPO / "examples" / "federation.toml", out_dir=out, schema=adult_paths[1],
                                  certs=tmp_path / "certs", authorized_keys=pubs)

    foreign = tmp_path / "mine"
    before = _user_folder(foreign)
    with pytest.raises(FedsynthError, match=f"--out {re.escape(str(foreign))}: .*refusing to write there"):
        prepare(opts(foreign))
    assert _snapshot(foreign) == before
    run = tmp_path / "run"
    prepare(opts(run))
    prepare(opts(run))  # its own interrupted run: accepted, and resumed by the coordinator
    (run / "synthesizer").mkdir()
    with pytest.raises(FedsynthError, match="already holds a finished run"):
        prepare(opts(run))

