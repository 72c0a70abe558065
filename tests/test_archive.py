"""What a PACS export holds besides cines — stills, structured reports, other modalities —
is skipped with its reason by ingest and predict alike; Doppler and colour cines are flagged from
their ultrasound regions so users can filter them."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from _model_fixtures import write_tiny_model
from _video_fixtures import echo_frames, write_dicom
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.predict import PredictConfig, predict
from echoclr.data.video import write_video

TISSUE = (0, 0, 63, 47, 1, 1)
COLOUR = (10, 10, 50, 40, 1, 2)  # RegionDataType 2: colour flow
PW = (0, 48, 63, 63, 3, 3)  # RegionSpatialFormat 3: spectral; RegionDataType 3: PW Doppler


def write_export(root):
    """pydicom's real still, SR and cine, a CT cine and three synthetic US cines."""
    root.mkdir()
    for name in ("examples_rgb_color.dcm", "examples_jpeg2k.dcm", "test-SR.dcm",
                 "examples_ybr_color.dcm"):
        shutil.copy(get_testdata_file(name), root / name)
    frames = echo_frames(t=8, h=48, w=64)[0]
    write_dicom(root / "ct.dcm", frames, Modality="CT")
    write_dicom(root / "plain.dcm", frames, regions=[TISSUE[:4]])
    write_dicom(root / "colour.dcm", frames, regions=[TISSUE, COLOUR])
    tall = echo_frames(t=8, h=64, w=64, seed=1)[0]
    write_dicom(root / "doppler.dcm", tall, regions=[TISSUE, PW])
    write_video(root / "clip.avi", frames, fps=30)
    names = sorted(p.name for p in root.iterdir())
    pd.DataFrame({"path": names, "study_id": [f"S{k}" for k in range(len(names))],
                  "split": "train"}).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


SKIPPED = {
    "examples_rgb_color.dcm": "single-frame still, not a cine",
    "examples_jpeg2k.dcm": "single-frame still, not a cine",
    "test-SR.dcm": "DICOM structured report, not an image",
    "ct.dcm": "modality CT, not ultrasound",
}
REGIONS = {"plain.dcm": "2d", "colour.dcm": "2d+colour", "doppler.dcm": "2d+doppler",
           "examples_ybr_color.dcm": "2d", "clip.avi": ""}


@pytest.fixture(scope="module")
def export_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    manifest = write_export(root / "pacs")
    cache = root / "cache"
    result = ingest(IngestConfig(manifest=str(manifest), out=str(cache), size=16, salt="s",
                                 keep_source_paths=True))
    return root / "pacs", cache, result


def test_stills_reports_and_other_modalities_are_skipped_with_their_reason(export_run):
    _, _, result = export_run
    assert result.reasons == SKIPPED
    assert result.n_ok == len(REGIONS)


def test_doppler_and_colour_cines_are_flagged_in_the_cache(export_run):
    _, cache, _ = export_run
    rows = pd.read_csv(cache / "manifest.csv", keep_default_na=False).set_index("source")
    assert rows["us_regions"].to_dict() == REGIONS


def test_predict_skips_what_ingest_skips(export_run, tmp_path):
    pacs, _, _ = export_run
    model = write_tiny_model(tmp_path / "model")
    with pytest.warns(UserWarning):
        out = predict(PredictConfig(model=str(model), inputs=(str(pacs),),
                                    out=str(tmp_path / "p.csv"), precision="fp32", device="cpu"))
    videos = pd.read_csv(out).query("level == 'video'")
    status = {p.split("/")[-1]: s for p, s in zip(videos["path"], videos["status"], strict=True)}
    for name, reason in SKIPPED.items():
        assert status[name] == reason, name
    assert all(status[name] == "ok" for name in REGIONS if name.endswith(".dcm"))
    assert np.isnan(videos.set_index(videos["path"].str.split("/").str[-1])
                    .loc["examples_rgb_color.dcm", "probability"])
