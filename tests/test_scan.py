"""`echoclr scan`: a PACS export's headers → a manifest of cines grouped by study, with
pseudonymous ids, header facts, joined labels, and a report of every other file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from _video_fixtures import echo_frames, write_dicom
from echoclr import cli
from echoclr.commands.scan import ScanConfig, scan
from echoclr.data.dicom import hash_identifier
from echoclr.errors import UserError

SALT = "scan-salt-91"


def view_code(meaning: str) -> list[Dataset]:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "G-A19B", "SRT", meaning
    return [item]


def write_pacs(root):
    """Two patients, three studies, in folders named after them, with the files a PACS export
    holds besides cines. Returns {relative path: study UID} of the cines, and the identifiers."""
    frames = echo_frames(t=8, h=48, w=64)[0]
    cines, ids = {}, {}
    plan = [("MRN12345678_DOE", "20230915_ECHO", "ACC998877", 2),
            ("MRN12345678_DOE", "20240102_ECHO", "ACC998878", 1),
            ("MRN87654321_ROE", "20230301_ECHO", "ACC112233", 2)]
    for patient, study, accession, n in plan:
        uid = pydicom.uid.generate_uid()
        ids[accession] = (patient.split("_")[0], uid)
        folder = root / patient / study
        folder.mkdir(parents=True)
        for k in range(n):
            extra = ({"ViewCodeSequence": view_code("Parasternal long axis")} if k == 0
                     else {"SeriesDescription": "Echo A4C zoom", "CineRate": 50})
            path = write_dicom(folder / f"IM{k:04d}", frames, StudyInstanceUID=uid,
                               PatientID=patient.split("_")[0], AccessionNumber=accession,
                               Manufacturer="Acme", ManufacturerModelName="Sono 9",
                               regions=[(0, 0, 63, 47, 1, 1)] + ([(5, 5, 40, 40, 1, 2)] if k
                                                                 else []), **extra)
            cines[str(path.relative_to(root))] = uid
    other = root / "MRN12345678_DOE" / "20230915_ECHO"
    shutil.copy(get_testdata_file("examples_rgb_color.dcm"), other / "IM9000")
    shutil.copy(get_testdata_file("test-SR.dcm"), other / "SR0001")
    write_dicom(other / "CT0001", frames, Modality="CT")
    corrupt = write_dicom(other / "IM9001", frames).read_bytes()  # NumberOfFrames "x!"
    (other / "IM9001").write_bytes(corrupt.replace(b"\x28\x00\x08\x00IS\x02\x008 ",
                                                   b"\x28\x00\x08\x00IS\x02\x00x!"))
    (root / "README.txt").write_text("exported by the PACS")
    return cines, ids


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "pacs"
    cines, ids = write_pacs(root)
    return root, cines, ids


def test_scan_groups_cines_by_study_with_pseudonyms_and_reports_the_rest(pacs, tmp_path):
    root, cines, ids = pacs
    out = tmp_path / "manifest.csv"
    result = scan(ScanConfig(root=str(root), out=str(out), salt=SALT))
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 5 and result.n_studies == 3 and result.n_patients == 2
    uid_of = {os.path.relpath(root / rel, tmp_path): uid for rel, uid in cines.items()}
    assert {p: s for p, s in zip(df["path"], df["study_id"], strict=True)} == {
        p: hash_identifier(uid, SALT) for p, uid in uid_of.items()}
    assert set(df["patient_id"]) == {hash_identifier(m, SALT) for m, _ in ids.values()}
    assert df["study_id"].is_monotonic_increasing  # grouped by study
    first = df[df["path"].str.endswith("IM0000")].iloc[0]
    second = df[df["path"].str.endswith("IM0001")].iloc[0]
    assert (first["n_frames"], first["fps"], first["height"], first["width"]) == (8, 30.0, 48, 64)
    assert second["fps"] == 50.0  # CineRate before FrameTime
    assert (first["us_regions"], second["us_regions"]) == ("2d", "2d+colour")
    assert (first["view_hint"], second["view_hint"]) == ("Parasternal long axis", "A4C")
    assert first["photometric"] == "MONOCHROME2" and first["manufacturer"] == "Acme"
    assert first["device_model"] == "Sono 9" and "Little Endian" in first["transfer_syntax"]
    report = pd.read_csv(tmp_path / "scan_report.csv").set_index("path")["reason"]
    reason = {os.path.basename(p): r for p, r in report.items()}
    assert reason["IM9000"] == "single-frame still, not a cine"
    assert reason["SR0001"] == "DICOM structured report, not an image"
    assert reason["CT0001"] == "modality CT, not ultrasound"
    assert reason["IM9001"].startswith("unreadable DICOM")
    assert reason["README.txt"] == "not a DICOM file"
    state = (tmp_path / "manifest.csv.scan.sqlite").read_bytes()  # the whole database file
    assert not list(tmp_path.glob("*-wal"))  # closed: everything is in the database file
    texts = (out.read_text() + (tmp_path / "scan_report.csv").read_text()).encode() + state
    for accession, (mrn, uid) in ids.items():
        assert uid.encode() not in texts and accession.encode() not in texts
    assert b"MRN" not in state.replace(b"MRN12345678_DOE/", b"").replace(
        b"MRN87654321_ROE/", b"")  # only folder names: paths


def test_labels_join_by_accession_in_memory(pacs, tmp_path):
    root, _, ids = pacs
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"accession": [*ids, "ACC000000"], "lvh": [1, 0, 1, 0]}).to_csv(labels,
                                                                                 index=False)
    out = tmp_path / "m.csv"
    result = scan(ScanConfig(root=str(root), out=str(out), salt=SALT, labels=str(labels)))
    df = pd.read_csv(out)
    per_study = df.groupby("study_id")["lvh"].first()
    studies = {hash_identifier(uid, SALT): lab for (_, uid), lab in zip(ids.values(), [1, 0, 1])}
    assert per_study.to_dict() == studies and result.unmatched_labels == 1
    assert "accession" not in df.columns and "ACC" not in out.read_text()
    with pytest.raises(UserError, match="no column 'study_uid'"):
        scan(ScanConfig(root=str(root), out=str(out), labels=str(labels), key="study_uid"))


def test_rescan_reads_only_changed_files_and_workers_agree(pacs, tmp_path):
    root, cines, _ = pacs
    out = tmp_path / "m.csv"
    first = scan(ScanConfig(root=str(root), out=str(out), salt=SALT, workers=2))
    before = out.read_text()
    again = scan(ScanConfig(root=str(root), out=str(out), salt=SALT))
    assert again.n_reused == again.n_files == first.n_files and out.read_text() == before
    touched = root / next(iter(cines))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert scan(ScanConfig(root=str(root), out=str(out), salt=SALT)).n_reused == \
        first.n_files - 1
    assert out.read_text() == before
    other_salt = scan(ScanConfig(root=str(root), out=str(out), salt="another"))
    assert other_salt.n_reused == 0  # another salt: other pseudonyms, nothing reused
    with sqlite3.connect(tmp_path / "m.csv.scan.sqlite") as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == first.n_files


def test_cli_scan_prints_a_summary(pacs, tmp_path, capsys):
    root, _, _ = pacs
    assert cli.main(["scan", str(root), "--out", str(tmp_path / "m.csv"), "--salt", SALT,
                     "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "5 cines of 3 studies, 2 patients" in printed
    assert "single-frame still, not a cine" in printed and "scan_report.csv" in printed


KILLED_SCAN = """
import os, signal, sys
import echoclr.commands.scan as command
import echoclr.data.scan_state as state
state.BATCH = 10  # commit every 10 results
calls = 0
def scan_file(**kwargs):
    global calls
    calls += 1
    if calls == 25:  # 24 results recorded, 20 of them committed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(**kwargs)
real, command.scan_file = command.scan_file, scan_file
command.scan(command.ScanConfig(root=sys.argv[1], out=sys.argv[2], salt="k"))
"""


def test_a_scan_killed_midway_resumes_without_reading_committed_files_again(tmp_path):
    root = tmp_path / "export"
    for k in range(40):
        (root / f"S{k % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"S{k % 4}" / f"note{k:02d}.txt").write_text(f"file {k}")
    out = tmp_path / "m.csv"
    killed = subprocess.run([sys.executable, "-c", KILLED_SCAN, str(root), str(out)], check=False,
                            env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -9 and not out.exists()
    resumed = scan(ScanConfig(root=str(root), out=str(out), salt="k"))
    assert (resumed.n_files, resumed.n_reused) == (40, 20)  # only the lost batch read again
    assert resumed.skipped == {"not a DICOM file": 40}
    (root / "S0" / "note00.txt").unlink()  # gone from the export: gone from the state
    assert scan(ScanConfig(root=str(root), out=str(out), salt="k")).n_reused == 39
    with sqlite3.connect(tmp_path / "m.csv.scan.sqlite") as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 39
    assert len(pd.read_csv(tmp_path / "scan_report.csv")) == 39


def test_an_unstatable_file_is_reported_by_every_scan_and_never_reused(tmp_path):
    root = tmp_path / "export"
    root.mkdir()
    (root / "loop.dcm").symlink_to(root / "loop.dcm")  # stat() fails: a symlink loop
    (root / "notes.txt").write_text("not a cine")
    for _ in range(2):
        result = scan(ScanConfig(root=str(root), out=str(tmp_path / "m.csv"), salt="k"))
        report = dict(pd.read_csv(tmp_path / "scan_report.csv").to_numpy())
        assert report == {"export/loop.dcm": "unreadable (the file cannot be stat'ed)",
                          "export/notes.txt": "not a DICOM file"}
    assert (result.n_files, result.n_reused) == (2, 1)  # the loop is looked at again


@pytest.mark.parametrize("workers", [1, 2])
def test_the_progress_bar_counts_every_file_read_or_reused(pacs, tmp_path, monkeypatch,
                                                           workers):
    import io

    import echoclr.commands.scan as scan_command

    bars, real_bar = [], scan_command.tqdm

    def recording_bar(**kw):  # the real bar, drawn into a buffer so it is never disabled
        bars.append(real_bar(**(kw | {"disable": False, "file": io.StringIO()})))
        return bars[-1]

    monkeypatch.setattr(scan_command, "tqdm", recording_bar)
    root, _, _ = pacs
    out = tmp_path / "m.csv"
    first = scan(ScanConfig(root=str(root), out=str(out), salt=SALT, workers=workers))
    again = scan(ScanConfig(root=str(root), out=str(out), salt=SALT, workers=workers))
    assert again.n_reused == first.n_files  # the second scan reads nothing: the bar still fills
    assert [(bar.n, bar.total) for bar in bars] == [(first.n_files, first.n_files)] * 2
