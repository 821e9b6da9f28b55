"""Where fedsynth writes: never over anything it did not write.

Every command with an output path goes through this module, so one rule holds everywhere:

* a path that does not exist, or an empty folder, is written;
* a path holding an earlier fedsynth output of the same kind is replaced only when the caller
  asks (``--overwrite`` / ``overwrite=True``), and then atomically: the new output is built
  next to it and swapped in with renames, so a failure leaves the old one in place;
* anything else (a file or folder fedsynth did not write, a fedsynth output of another kind,
  or one to which other files were added) is refused with an error naming the path.
  Nothing is deleted, moved aside or hidden.

An output is recognised by its marker: ``synthesizer.json`` for a model folder (it carries the
model format), :data:`MANIFEST` for the other folders (written when fedsynth creates them), the
lineage sidecar for a synthetic table.
"""

from __future__ import annotations

import contextlib
import enum
import fnmatch
import glob
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsynth.common.version import __version__
from fedsynth.common.atomic import atomic_write_text
from fedsynth.common.errors import FedsynthError, StorageError

MANIFEST = ".fedsynth-output.json"
MANIFEST_FORMAT = "fedsynth-output/1"
MODEL_FORMAT = "fedsynth-synthesizer/1"
# What fedsynth's own writes can leave behind after a crash: atomic_path's temp files, the
# folders built or set aside by replace_dir.
_LEFTOVERS = (".*.tmp", ".*.new-*", ".*.old-*")
OVERWRITE_HINT = "pass --overwrite (overwrite=True in Python) to replace it"


class Existing(enum.Enum):
    """What an output path holds before fedsynth writes it."""

    NOTHING = "nothing"
    EMPTY = "an empty folder"
    PREVIOUS = "an earlier fedsynth output of the same kind"


@dataclass(frozen=True)
class OutputKind:
    """A kind of output fedsynth writes, and how to recognise one it wrote before."""

    name: str  # in messages and in the manifest
    entries: tuple[str, ...] = ()  # folders: glob patterns of what fedsynth writes inside
    marker: str = MANIFEST  # folders: a file inside; single files: the suffix of a sidecar next to it
    folder: bool = True
    identify: Callable[[dict[str, Any]], bool] | None = None  # None: the manifest names this kind

    def marker_path(self, path: Path) -> Path:
        return path / self.marker if self.folder else path.with_name(path.name + self.marker)

    def recognises(self, path: Path) -> bool:
        meta = _json_object(self.marker_path(path))
        if meta is None:
            return False
        if self.identify is not None:
            return bool(self.identify(meta))
        return meta.get("format") == MANIFEST_FORMAT and meta.get("kind") == self.name

    def owns(self, name: str) -> bool:
        """Whether fedsynth writes an entry of this name in such a folder."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*self.entries, self.marker, *_LEFTOVERS))


# Every output fedsynth writes at a user's path. Kinds without ``entries`` are filled in place
# (files added to them, never replaced as a whole).
MODEL_FOLDER = OutputKind("model folder", ("synthesizer.json", "weights.pt"), marker="synthesizer.json",
                          identify=lambda meta: meta.get("format") == MODEL_FORMAT)
CHECKPOINT_FOLDER = OutputKind("run checkpoint", ("synthesizer.json", "weights.pt"), marker="synthesizer.json",
                               identify=lambda meta: isinstance(meta.get("checkpoint"), dict))
SYNTHETIC_TABLE = OutputKind("synthetic table", marker=".lineage.json", folder=False,
                             identify=lambda meta: meta.get("generator") == "fedsynth"
                             and meta.get("synthetic") is True)
REPORT_FOLDER = OutputKind("evaluation report", ("report.json", "report.html"))
SILO_FOLDER = OutputKind("demo silo folder", ("schema.json", "client-*.csv"))
CERTIFICATE_FOLDER = OutputKind("certificate folder", ("ca.pem", "ca.key", "server.pem", "server.key"))
KEY_FOLDER = OutputKind("key folder")
COORDINATOR_RUN = OutputKind("coordinator run")
SIMULATION_RUN = OutputKind("simulation run", (
    "schema.json", "holdout.csv", "train.csv", "silos", "clients", "checkpoint", "synthesizer", "model_card.json",
    "synthetic.csv", "synthetic.csv.lineage.json", "summary.json", "events.jsonl", "report.json", "report.html",
    "flower.log", "flower"))


def find_existing(path: Path, kind: OutputKind, option: str = "") -> Existing:
    """What ``path`` holds; refuses (naming it) anything that is not fedsynth's ``kind``.

    First puts back an earlier output a crash left set aside (:func:`recover`).
    """
    path = Path(path)
    recover(path)
    if not path.exists() and not path.is_symlink():
        if kind.folder or not kind.marker_path(path).exists():
            return Existing.NOTHING
        if kind.recognises(path):
            return Existing.PREVIOUS  # a sidecar whose table is gone: still fedsynth's own
        raise FedsynthError(f"{_label(option)}{path}: {kind.marker_path(path)} exists and was not written by fedsynth; "
                            "refusing to replace it (choose another path)")
    if kind.folder != path.is_dir():
        found = "a file" if kind.folder else "a folder"
        raise FedsynthError(f"{_label(option)}{path}: is {found}, not a fedsynth {kind.name}; refusing to replace it "
                            "(choose another path)")
    if kind.folder and not any(path.iterdir()):
        return Existing.EMPTY
    if kind.recognises(path):
        return Existing.PREVIOUS
    raise FedsynthError(f"{_label(option)}{path}: {_not_ours(path, kind)}; refusing to write there "
                        f"(choose a new path{' or an empty folder' if kind.folder else ''})")


def check_replace(path: Path, kind: OutputKind, *, overwrite: bool, option: str = "") -> Existing:
    """Refuse unless ``path`` may be written as a whole ``kind``: free, or an earlier one with overwrite.

    Called before any long work (training, sampling) so that a refusal costs nothing.
    """
    path = Path(path)
    found = find_existing(path, kind, option)
    if path.is_symlink():
        raise FedsynthError(f"{_label(option)}{path}: is a symbolic link; give the path it points to "
                            f"({os.path.realpath(path)}) instead, so that the link is not replaced")
    if found is Existing.PREVIOUS:
        if not overwrite:
            raise FedsynthError(f"{_label(option)}{path}: already holds a fedsynth {kind.name}; {OVERWRITE_HINT}")
        foreign = sorted(p.name for p in path.iterdir() if not kind.owns(p.name)) if kind.folder else []
        if foreign:
            raise FedsynthError(f"{_label(option)}{path}: holds a fedsynth {kind.name} but also {foreign}, which "
                                "fedsynth did not write; move them out first (replacing the folder would delete them)")
    return found


@contextlib.contextmanager
def replace_dir(path: Path, kind: OutputKind, *, overwrite: bool, option: str = "") -> Iterator[Path]:
    """Yield an empty folder next to ``path`` to write ``kind`` into; on success it becomes ``path``.

    A failure (full disk, an exception in the caller) removes the new folder and leaves
    ``path`` as it was; a crash between the swap's two renames leaves the previous output as
    ``.<name>.old-*``, which :func:`recover` puts back (every later :func:`find_existing` runs it).
    """
    path = Path(path)
    found = check_replace(path, kind, overwrite=overwrite, option=option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = path.with_name(f".{path.name}.new-{secrets.token_hex(6)}")
        new.mkdir()  # like any folder the user makes: the umask decides its mode
    except OSError as exc:
        raise _storage_error(path, kind, exc) from exc
    try:
        yield new
        if kind.marker == MANIFEST:
            write_manifest(new, kind)
        _swap_in(new, path, found is Existing.PREVIOUS, kind)
    except BaseException as exc:
        shutil.rmtree(new, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _storage_error(path, kind, exc) from exc
        raise


def claim_dir(path: Path, kind: OutputKind, option: str = "") -> Existing:
    """Create (or reuse) a folder that fedsynth fills in place, and mark it as ``kind``.

    For outputs that are added to (key pairs) or written over a long run (a federation's run
    folder); what is already there is never removed: the caller refuses files it would replace.
    """
    path = Path(path)
    found = find_existing(path, kind, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if found is not Existing.PREVIOUS:
            write_manifest(path, kind)
    except OSError as exc:
        raise _storage_error(path, kind, exc) from exc
    return found


def write_manifest(folder: Path, kind: OutputKind) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "kind": kind.name,
                                                     "fedsynth_version": __version__}) + "\n")


def recover(path: Path) -> None:
    """After a crash mid-swap: if ``path`` is missing but its previous version was set aside, restore it."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        return
    olds = sorted(path.parent.glob(f".{glob.escape(path.name)}.old-*"))
    if olds:
        olds[-1].rename(path)


def _swap_in(new: Path, path: Path, replacing: bool, kind: OutputKind) -> None:
    if not replacing:
        new.rename(path)  # onto nothing, or onto an empty folder: one atomic rename
        return
    old = path.with_name(f".{path.name}.old-{time.time_ns()}")
    path.rename(old)
    try:
        new.rename(path)
    except BaseException:
        old.rename(path)  # put the previous output back
        raise
    _remove_owned(old, kind)


def _remove_owned(folder: Path, kind: OutputKind) -> None:
    """Delete the set-aside previous output: only the entries fedsynth writes there."""
    for entry in folder.iterdir():
        if kind.owns(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something appeared meanwhile: leave it rather than delete it
        folder.rmdir()


def _not_ours(path: Path, kind: OutputKind) -> str:
    if not kind.folder:
        return f"exists and was not written by fedsynth (no lineage sidecar {kind.marker_path(path).name})"
    manifest = _json_object(path / MANIFEST)
    other = manifest.get("kind") if manifest is not None and manifest.get("format") == MANIFEST_FORMAT else None
    if other is None and kind is not MODEL_FOLDER and MODEL_FOLDER.recognises(path):
        other = MODEL_FOLDER.name
    if other is not None:
        return f"holds another kind of fedsynth output ({other}; expected: {kind.name})"
    return f"exists and holds files fedsynth did not write (no {kind.marker} marking a fedsynth {kind.name})"


def _label(option: str) -> str:
    return f"{option} " if option else ""


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON: not a marker
        return None
    return meta if isinstance(meta, dict) else None


def _storage_error(path: Path, kind: OutputKind, exc: OSError) -> StorageError:
    return StorageError(f"{path}: could not write the {kind.name} ({exc.strerror or exc}); the previous "
                        "version, if any, is unchanged", exc.errno)
