"""predict: mixed good and broken inputs, study grouping, identifiers, and that new files are
preprocessed exactly as the training cache was."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from _model_fixtures import write_tiny_model
from _video_fixtures import PHI, echo_frames
from echoclr.cli import main
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.predict import PredictConfig, predict
from echoclr.data.cache import VideoCache
from echoclr.data.dicom import hash_identifier
from echoclr.data.video import write_video
from echoclr.inference import predict_videos
from echoclr.weights import load_classifier


def _real_dicom_with_phi(path):
    """pydicom's real ultrasound cine (JPEG, YBR_FULL_422), with known identifiers set."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ds.PatientName, ds.PatientID = PHI["PatientName"], PHI["PatientID"]
    ds.save_as(path)
    return path, str(ds.StudyInstanceUID)


def test_mixed_good_and_broken_inputs(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    good_avi = tmp_path / "good.avi"
    write_video(good_avi, echo_frames(t=12, h=48, w=64)[0], fps=30)
    dicom, study_uid = _real_dicom_with_phi(tmp_path / "cine.dcm")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    text = tmp_path / "notes.dcm"
    text.write_text("not a DICOM file\n" * 10)
    cfg = PredictConfig(model=str(model), out=str(tmp_path / "pred.csv"), salt="s3cret",
                        inputs=tuple(str(p) for p in (good_avi, dicom, empty, text)))
    with pytest.warns(UserWarning) as caught:
        out = predict(cfg)
    warned = " ".join(str(w.message) for w in caught)
    assert "empty.avi" in warned and "notes.dcm" in warned
    df = pd.read_csv(out, dtype={"study_id": str})
    videos = df[df["level"] == "video"].set_index("path")
    for good in (good_avi, dicom):
        assert videos.at[str(good), "status"] == "ok"
        assert 0 < videos.at[str(good), "probability"] < 1
    assert videos.at[str(empty), "status"] == "empty file (0 bytes)"
    assert "not a DICOM file" in videos.at[str(text), "status"]
    assert videos.loc[[str(empty), str(text)], "probability"].isna().all()
    # The DICOM's study is its salted StudyInstanceUID hash; the others are their own study.
    assert videos.at[str(dicom), "study_id"] == hash_identifier(study_uid, "s3cret")
    studies = df[df["level"] == "study"].set_index("study_id")
    assert len(studies) == 4
    assert studies.at[hash_identifier(study_uid, "s3cret"), "probability"] == pytest.approx(
        videos.at[str(dicom), "probability"])
    assert studies.at[str(empty), "status"] == "no readable video"
    csv_text = out.read_text()
    for identifier in (PHI["PatientName"], PHI["PatientID"], "Doe", study_uid, "s3cret"):
        assert identifier not in csv_text


def test_manifest_groups_videos_into_studies(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    folder = tmp_path / "archive"
    folder.mkdir()
    for k in range(3):
        write_video(folder / f"v{k}.avi", echo_frames(t=10, h=32, w=40, seed=k)[0], fps=30)
    (folder / "manifest.csv").write_text(
        "path,study_id\nv0.avi,A\nv1.avi,A\nv2.avi,B\ngone.avi,B\n")
    with pytest.warns(UserWarning, match="gone.avi"):
        out = predict(PredictConfig(model=str(model), inputs=(str(folder / "manifest.csv"),),
                                    out=str(tmp_path / "p.csv"), clips=3))
    df = pd.read_csv(out)
    videos, studies = df[df["level"] == "video"], df[df["level"] == "study"].set_index("study_id")
    a = videos[videos["study_id"] == "A"]["probability"]
    assert len(a) == 2 and studies.at["A", "probability"] == pytest.approx(a.mean())
    assert studies.at["A", "n_videos"] == 2 and studies.at["A", "status"] == "ok"
    assert studies.at["B", "n_videos"] == 1
    assert studies.at["B", "status"] == "ok (1 of 2 videos failed)"


def test_folder_is_walked_recursively(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    nested = tmp_path / "in" / "deeper"
    nested.mkdir(parents=True)
    write_video(nested / "a.avi", echo_frames(t=8, h=32, w=40)[0], fps=30)
    (nested / "readme.txt").write_text("ignored")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to complain about
        out = predict(PredictConfig(model=str(model), inputs=(str(tmp_path / "in"),),
                                    out=str(tmp_path / "p.csv")))
    df = pd.read_csv(out)
    assert df["level"].tolist() == ["video", "study"]
    assert df["path"][0].endswith("a.avi") and df["status"].eq("ok").all()


def test_new_files_are_preprocessed_exactly_as_the_cache(tmp_path):
    """A file scored by predict gets the probability its ingested copy gets from the cache."""
    folder = tmp_path / "archive"
    folder.mkdir()
    write_video(folder / "v.avi", echo_frames(t=14, h=48, w=64, seed=3)[0], fps=30)
    (folder / "m.csv").write_text("path,study_id\nv.avi,S1\n")
    ingest(IngestConfig(manifest=str(folder / "m.csv"), out=str(tmp_path / "cache"), size=16,
                        max_frames=10))
    cache = VideoCache(tmp_path / "cache")
    run = write_tiny_model(tmp_path / "model", preprocessing=cache.config, eval_clips=3)
    model, meta = load_classifier(run)
    ref = predict_videos(model, cache, cache.rows(), label=None, clip_len=meta["clip_len"],
                         period=meta["period"], clips=3, precision="fp32")
    out = predict(PredictConfig(model=str(run / "model.pt"), inputs=(str(folder / "m.csv"),),
                                out=str(tmp_path / "p.csv"), precision="fp32", device="cpu"))
    got = pd.read_csv(out)
    np.testing.assert_allclose(got["probability"], ref["y_score"][0], rtol=0, atol=1e-6)


def test_cli_predict(tmp_path, capsys):
    model = write_tiny_model(tmp_path / "model")
    video = tmp_path / "v.mp4"
    write_video(video, echo_frames(t=8, h=32, w=32)[0], fps=30)
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(video), "--out", str(out), "--clips", "1"]) == 0
    assert str(out) in capsys.readouterr().out
    assert pd.read_csv(out)["status"].eq("ok").all()


def test_model_without_preprocessing_is_refused(tmp_path):
    model = write_tiny_model(tmp_path / "model", preprocessing={"size": 16})
    with pytest.raises(ValueError, match="max_frames"):
        predict(PredictConfig(model=str(model), inputs=("x.avi",), out=str(tmp_path / "p.csv")))
