"""A DICOM header's verdict: a corrupt or truncated file says so (naming what failed) instead of
passing for an object without pixel data; genuine non-image objects keep their reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.scan import ScanConfig, scan
from echoclr.data.dicom_header import not_a_cine, read_header

CINE = get_testdata_file("examples_ybr_color.dcm")  # 30 frames, JPEG baseline, encapsulated


def reason(path) -> str | None:
    return not_a_cine(read_header(path))


def cut_cine(path, keep: int):
    path.write_bytes(Path(CINE).read_bytes()[:keep])
    return path


def test_dicm_preamble_over_random_bytes_is_corrupt(tmp_path):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(2000))
    assert reason(path).startswith("corrupt or truncated DICOM: the bytes after the DICM "
                                   "preamble do not parse as DICOM (no file meta information")


def test_nothing_after_the_preamble_is_corrupt(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    assert reason(path) == "corrupt or truncated DICOM: nothing follows the DICM preamble"


@pytest.mark.parametrize("keep", [200, 1000, 20_000])
def test_a_cine_cut_inside_its_header_is_truncated(tmp_path, keep):
    found = reason(cut_cine(tmp_path / "cut.dcm", keep))
    assert found.startswith("corrupt or truncated DICOM: the dataset ends early")
    assert "no pixel data" not in found


def test_a_cine_cut_inside_the_pixel_data_elements_length_names_it(tmp_path):
    offset = read_header(CINE).pixel_offset  # the value starts 12 bytes after the tag
    found = reason(cut_cine(tmp_path / "cut.dcm", offset - 4))
    assert found.startswith("corrupt or truncated DICOM: the dataset ends early: (7FE0,0010) "
                            "PixelData")


@pytest.mark.parametrize(("name", "expected"), [
    ("rtplan.dcm", "DICOM has no pixel data (not an image)"),
    ("test-SR.dcm", "DICOM structured report, not an image"),
    ("DICOMDIR", "DICOMDIR (an index of the media), not an image"),
    ("examples_rgb_color.dcm", "single-frame still, not a cine"),
    ("examples_ybr_color.dcm", None),
])
def test_intact_files_keep_their_reasons(name, expected):
    assert reason(get_testdata_file(name)) == expected


def test_scan_reports_a_cut_header_and_lists_a_cut_pixel_data_that_ingest_refuses(tmp_path):
    """Scan reads headers only: a cine cut inside its pixel data is listed; decoding it in
    ingest is what finds the missing frames."""
    root = tmp_path / "pacs"
    root.mkdir()
    cut_cine(root / "header_cut.dcm", 1000)
    cut_cine(root / "pixels_cut.dcm", read_header(CINE).pixel_offset + 60_000)
    (root / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 8)
    out = tmp_path / "m.csv"
    scan(ScanConfig(root=str(root), out=str(out), salt="s"))
    report = dict(pd.read_csv(tmp_path / "scan_report.csv").to_numpy())
    assert report["pacs/header_cut.dcm"].startswith("corrupt or truncated DICOM: the dataset "
                                                    "ends early")
    assert report["pacs/garbage.dcm"].startswith("corrupt or truncated DICOM: the bytes after")
    assert pd.read_csv(out)["path"].tolist() == ["pacs/pixels_cut.dcm"]
    result = ingest(IngestConfig(manifest=str(out), out=str(tmp_path / "cache"), size=16,
                                 salt="s"))
    assert result.n_ok == 0
    assert "truncated" in result.reasons["pacs/pixels_cut.dcm"]
