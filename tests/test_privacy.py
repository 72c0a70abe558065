"""Privacy and security: DICOM identifiers never reach any output of any command, burned-in text
outside the fan never reaches the cache's pixels, checkpoints carrying pickled objects are
refused before anything in them runs, and a manifest cannot silently pull files from elsewhere.
"""

from __future__ import annotations

import ast
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from _video_fixtures import PHI, echo_frames, write_dicom
from echoclr import cli
from echoclr.commands.finetune import FinetuneConfig, build_classifier
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data.dicom import hash_identifier
from echoclr.data.identity import file_identity
from echoclr.data.manifest import ManifestError
from echoclr.data.preprocess import preprocess
from echoclr.data.video import read_video
from echoclr.data.video_types import Video
from echoclr.models import Classifier, build_encoder
from echoclr.weights import load_classifier, load_encoder

MORE_PHI = {
    "AccessionNumber": "ACC-55501234",
    "InstitutionName": "St Elsewhere Heart Hospital",
    "ReferringPhysicianName": "Smith^Robert",
    "PatientAddress": "12 Harbour Lane",
}
SALT = "salt-5b1e-secret"
SRC = Path(__file__).resolve().parents[1] / "src" / "echoclr"


def write_phi_cohort(root: Path) -> tuple[Path, list[str]]:
    """10 studies x 2 DICOM cines carrying PHI and burned-in text; pseudonymous manifest ids.
    Returns the manifest and every identifier that must not leak."""
    rows, uids = [], []
    for s in range(10):
        split, label = ["train"] * 4 + ["val"] * 2 + ["test"] * 4, s % 2
        for v in range(2):
            path = root / f"exam {s}" / f"IM{v:04d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(path, echo_frames(t=8, h=32, w=40, seed=10 * s + v)[0], **MORE_PHI)
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
            rows.append({"path": f"exam {s}/IM{v:04d}", "study_id": f"S{s}",
                         "patient_id": f"P{s}", "view": "PLAX", "split": split[s], "lvh": label})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    needles = [*PHI.values(), *MORE_PHI.values(), *uids, SALT, "Doe", "Janet", "Smith",
               "Elsewhere", "1945-03-17", "2019-06-21", "17/03/1945", "21/06/2019"]
    return root / "manifest.csv", needles


def test_phi_reaches_no_output_of_any_command(tmp_path, capsys):
    """ingest → pretrain → finetune → evaluate through the CLI: no identifier in any file of the
    cache or the run folders, nor in anything printed or warned."""
    archive = tmp_path / "archive"
    archive.mkdir()
    manifest, needles = write_phi_cohort(archive)
    out = tmp_path / "outputs"
    cache, pre, ft = out / "cache", out / "pretrain", out / "finetune"
    common = ["--workers", "0", "--precision", "fp32", "--no-progress"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["ingest", str(manifest), "--out", str(cache), "--size", "16",
                         "--salt", SALT]) == 0
        assert cli.main(["pretrain", str(cache), "--out", str(pre), "--encoder", "r3d_tiny",
                         "--width", "4", "--batch-size", "4", "--max-steps", "2", *common]) == 0
        assert cli.main(["finetune", str(cache), "--out", str(ft), "--init",
                         str(pre / "encoder.pt"), "--task", "lvh", "--clip-len", "4",
                         "--batch-size", "8", "--epochs", "1", "--val-clips", "1",
                         "--eval-clips", "1", *common]) == 0
        assert cli.main(["evaluate", str(ft), "--n-resamples", "20", "--clips", "1",
                         "--precision", "fp32"]) == 0
    printed = capsys.readouterr()
    stored = b"".join(p.read_bytes() for p in archive.rglob("IM*"))
    assert all(v.encode() in stored for v in [*PHI.values(), *MORE_PHI.values()])  # the inputs do
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"manifest.csv", "ingest_report.csv", "ingest_config.json", "encoder.json",
            "log.jsonl", "config.json", "model.json", "predictions.csv", "metrics.json"} <= names
    assert len(list((cache / "videos").glob("*.json"))) == 20
    texts = {str(p): p.read_bytes() for p in files}
    texts["stdout+stderr"] = (printed.out + printed.err).encode()
    texts["warnings"] = "\n".join(str(w.message) for w in caught).encode()
    leaks = {(where, n) for where, data in texts.items() for n in needles if n.encode() in data}
    assert not leaks
    # Only salted hashes link videos to DICOM identities.
    hashes = set(pd.read_csv(cache / "manifest.csv")["_patient_id_hash"])
    assert hashes == {hash_identifier(PHI["PatientID"], SALT)}


def test_burned_in_text_outside_the_fan_is_zeroed_in_the_cache(tmp_path):
    """Pixels, through ingest: pydicom's real ultrasound cine (static text, icons) and a
    synthetic sector with a label, an ECG band and a depth scale outside it."""
    real = tmp_path / "real cine.dcm"
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), real)
    frames, sector, text = echo_frames(t=12, h=64, w=80, seed=5)
    write_dicom(tmp_path / "with text.dcm", frames)
    write_dicom(tmp_path / "without text.dcm", echo_frames(t=12, h=64, w=80, seed=5,
                                                           overlay=False)[0])
    assert (read_video(tmp_path / "with text.dcm").frames[:, text] == 230).all()
    paths = ["real cine.dcm", "with text.dcm", "without text.dcm"]
    pd.DataFrame({"path": paths, "study_id": ["A", "B", "C"]}).to_csv(tmp_path / "m.csv",
                                                                       index=False)
    ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "cache"), salt="s"))

    def cached(name):
        return np.load(tmp_path / "cache" / "videos" / f"{file_identity(tmp_path / name).key}.npy")

    np.testing.assert_array_equal(cached("with text.dcm"), cached("without text.dcm"))
    video = read_video(real)
    gray = video.frames.mean(axis=-1)
    overlay = (gray.std(axis=0) == 0) & (gray.mean(axis=0) > 40)  # static and bright
    assert overlay.sum() > 500  # the file does carry burned-in text
    scrubbed = video.frames.copy()
    scrubbed[:, overlay] = 0
    clean, _ = preprocess(Video(scrubbed, video.fps, video.meta), size=112, max_frames=100)
    np.testing.assert_array_equal(cached("real cine.dcm"), clean)
    assert cached("real cine.dcm").mean() > 5  # the fan itself is kept


def test_ingest_without_salt_warns_that_hashes_are_reversible(tmp_path):
    write_dicom(tmp_path / "a.dcm", echo_frames(t=4, h=32, w=40)[0])
    pd.DataFrame({"path": ["a.dcm"], "study_id": ["A"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.warns(UserWarning, match="no --salt given"):
        ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "c")))
    # What the warning is about: the unsalted hash of a guessable ID is a lookup away.
    stored = pd.read_csv(tmp_path / "c" / "manifest.csv")["_patient_id_hash"].iloc[0]
    assert stored == hash_identifier(PHI["PatientID"], "")


# --- checkpoints carrying pickled objects ---------------------------------------------------

class Payload:
    """Unpickling this calls open(marker, "w"): code that runs on load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def hostile_state(state: dict, marker: Path) -> dict:
    return state | {"payload": Payload(marker)}


def test_load_encoder_refuses_pickled_objects(tmp_path):
    encoder = build_encoder("r3d_tiny", width=4)
    torch.save(hostile_state(encoder.state_dict(), tmp_path / "ran"), tmp_path / "encoder.pt")
    (tmp_path / "encoder.json").write_text('{"encoder": "r3d_tiny", "width": 4}')
    with pytest.raises(ValueError, match="encoder.pt: refused to load: it carries pickled"):
        load_encoder(tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="refused to load"):
        build_classifier(FinetuneConfig(init=str(tmp_path / "encoder.pt")))
    assert not (tmp_path / "ran").exists()


def test_load_classifier_refuses_pickled_objects(tmp_path):
    model = Classifier(build_encoder("r3d_tiny", width=4))
    torch.save(hostile_state(model.state_dict(), tmp_path / "ran"), tmp_path / "model.pt")
    (tmp_path / "model.json").write_text('{"encoder": "r3d_tiny", "width": 4}')
    with pytest.raises(ValueError, match="model.pt: refused to load"):
        load_classifier(tmp_path)
    assert not (tmp_path / "ran").exists()


def test_kinetics_weights_refuse_pickled_objects(tmp_path):
    torch.save({"payload": Payload(tmp_path / "ran")}, tmp_path / "k400.pth")
    with pytest.raises(ValueError, match="k400.pth: refused to load"):
        build_classifier(FinetuneConfig(init="kinetics", weights=str(tmp_path / "k400.pth")))
    assert not (tmp_path / "ran").exists()


def test_pretrain_resume_refuses_pickled_checkpoint(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {}, "step": 2, "payload": Payload(tmp_path / "ran")},
               run / "checkpoint.pt")
    assert cli.main(["pretrain", str(tiny_cache), "--out", str(run), "--encoder", "r3d_tiny",
                     "--width", "4", "--batch-size", "4", "--max-steps", "2", "--workers", "0",
                     "--no-progress", "--resume"]) == 2  # a user error: one line, no traceback
    assert "checkpoint.pt: refused to load" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not (run / "encoder.pt").exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """A source scan, so a new loader (predict, export, ...) cannot forget it."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch":
                safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                           for k in node.keywords)
                calls.append((f"{path.relative_to(SRC)}:{node.lineno}", safe))
    assert calls, "no torch.load found: the scan is broken"
    assert [where for where, safe in calls if not safe] == []


# --- manifest paths outside the archive -----------------------------------------------------

def test_manifest_paths_outside_its_folder_are_refused_unless_allowed(tmp_path):
    """A manifest names files under its own folder; "../", absolute paths elsewhere and
    symlinks out of it are refused before anything is read, unless explicitly allowed."""
    archive, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    archive.mkdir()
    elsewhere.mkdir()
    for k, name in enumerate(["inside.dcm", "inside too.dcm"]):
        write_dicom(archive / name, echo_frames(t=4, h=32, w=40, seed=k)[0])
    for k, name in enumerate(["other.dcm", "other too.dcm", "linked.dcm"]):
        write_dicom(elsewhere / name, echo_frames(t=4, h=32, w=40, seed=10 + k)[0])
    (archive / "link.dcm").symlink_to(elsewhere / "linked.dcm")
    paths = ["inside.dcm", str(archive / "inside too.dcm"), "../elsewhere/other.dcm",
             str(elsewhere / "other too.dcm"), "link.dcm"]
    pd.DataFrame({"path": paths, "study_id": list("ABCDE")}).to_csv(archive / "m.csv",
                                                                     index=False)
    cfg = IngestConfig(manifest=str(archive / "m.csv"), out=str(tmp_path / "c"), salt="s")
    with pytest.raises(ManifestError) as info:
        ingest(cfg)
    message = str(info.value)
    assert "3 rows name a file outside the allowed roots" in message
    assert "lines 4, 5, 6;" in message  # the header is line 1; the two inside are fine
    assert "--allow-outside" in message and not (tmp_path / "c").exists()
    assert ingest(IngestConfig(**{**cfg.__dict__, "allowed_roots": (str(archive),
                                                                     str(elsewhere))})).n_ok == 5
    shutil.rmtree(tmp_path / "c")
    assert ingest(IngestConfig(**{**cfg.__dict__, "allow_outside": True})).n_ok == 5
