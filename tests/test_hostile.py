"""Hostile inputs end to end: every bad file is skipped with its reason while the rest flow on;
odd but valid videos (1–3 frames, all black, 16-bit, one-frame DICOM, non-ASCII paths) reach a
model forward pass; bad manifests stop ingest before anything is decoded or written.

Decoder-level checks of the same files live in test_video.py, validator-level manifest checks in
test_manifest.py; these tests take them through ``echoclr ingest`` and the datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _video_fixtures import echo_frames, write_dicom
from echoclr import cli
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data.cache import VideoCache
from echoclr.data.datasets import ClipDataset, StudyPairDataset
from echoclr.data.manifest import ManifestError, label_fraction_studies
from echoclr.data.transforms import augment_clips, minmax_scale, to_model_input
from echoclr.data.video import write_video
from echoclr.models import Classifier, PretrainModel, build_encoder

# Files that must be skipped: manifest path → words its reason in ingest_report.csv contains.
BAD = {
    "zero bytes.avi": "empty file (0 bytes)",
    "notes é.avi": "not a readable video",
    "cut short.avi": "truncated",
    "report ü.dcm": "no pixel data",
    "frames lie.dcm": "NumberOfFrames is 14 but the pixel data holds 10",
    "wide.avi": "frame size 4100x16 exceeds the 4096x4096 limit",
    "one frame ü.avi": "single-frame still, not a cine",
    "still.dcm": "single-frame still, not a cine",
}
# Odd but valid files that must be cached: manifest path → frames in the cache.
GOOD = {
    "two.avi": 2,
    "three.avi": 3,
    "black.avi": 8,
    "deep 16-bit ö.dcm": 10,
    "échos du cœur 心脏/vidéo 1.avi": 10,
}


def write_hostile_archive(root: Path) -> Path:
    frames = echo_frames(t=10, h=48, w=64)[0]
    (root / "échos du cœur 心脏").mkdir(parents=True)
    (root / "zero bytes.avi").touch()
    (root / "notes é.avi").write_text("this is a text file, not a video\n" * 20)
    write_video(root / "full.avi", frames, fps=30)
    data = (root / "full.avi").read_bytes()
    (root / "cut short.avi").write_bytes(data[: len(data) * 6 // 10])
    write_dicom(root / "report ü.dcm", frames, with_pixels=False)
    write_dicom(root / "frames lie.dcm", frames, number_of_frames=14)
    write_video(root / "wide.avi", np.zeros((1, 16, 4100), np.uint8), fps=30)
    for name, t in (("one frame ü.avi", 1), ("two.avi", 2), ("three.avi", 3)):
        write_video(root / name, frames[:t], fps=30)
    write_video(root / "black.avi", np.zeros((8, 48, 64), np.uint8), fps=30)
    write_dicom(root / "deep 16-bit ö.dcm", frames.astype(np.uint16) * 16, bits=12)
    write_dicom(root / "still.dcm", frames[:1])
    write_video(root / "échos du cœur 心脏" / "vidéo 1.avi", frames, fps=30)
    paths = [*BAD, *GOOD]
    n = len(paths)  # four studies mixing bad and odd files, so pairs of distinct videos occur
    manifest = pd.DataFrame({"path": paths, "study_id": [f"S{k % 4}" for k in range(n)],
                             "split": "train", "view": "PLAX", "lvh": [k % 2 for k in range(n)]})
    manifest.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """`echoclr ingest` (the CLI, in-process) over the hostile archive: (manifest, cache, exit
    status)."""
    root = tmp_path_factory.mktemp("hostile archive")
    manifest = write_hostile_archive(root)
    cache = root.parent / f"{root.name} cache"
    status = cli.main(["ingest", str(manifest), "--out", str(cache), "--size", "16",
                       "--salt", "s", "--keep-source-paths"])
    return manifest, cache, status


@pytest.mark.parametrize("path", list(BAD), ids=[
    "zero-byte", "text-named-avi", "truncated-avi", "dicom-without-pixels",
    "number-of-frames-mismatch", "absurd-dimensions", "1-frame", "single-frame-dicom"])
def test_bad_file_is_skipped_with_its_reason(hostile_run, path):
    _, cache, status = hostile_run
    assert status == 1  # the CLI exits 1 when anything was skipped
    report = pd.read_csv(cache / "ingest_report.csv").set_index("path")["reason"]
    assert BAD[path] in report[path]
    assert path not in set(VideoCache(cache).manifest["source"])


@pytest.mark.parametrize("path", list(GOOD), ids=[
    "2-frame", "3-frame", "all-black", "16bit-monochrome2", "non-ascii-folder"])
def test_odd_but_valid_file_is_cached(hostile_run, path):
    _, cache, _ = hostile_run
    rows = VideoCache(cache).manifest.set_index("source")
    assert rows.loc[path, "n_frames"] == GOOD[path]
    video = np.load(cache / rows.loc[path, "path"])
    assert video.shape == (GOOD[path], 16, 16) and video.dtype == np.uint8


def test_ingest_summary_names_every_skipped_file(hostile_run, capsys):
    manifest, cache, _ = hostile_run
    status = cli.main(["ingest", str(manifest), "--out", str(cache), "--size", "16",
                       "--salt", "s", "--keep-source-paths"])
    printed = capsys.readouterr().out
    assert status == 1 and f"({len(GOOD)} from an earlier run); skipped {len(BAD)}" in printed
    for line, (path, reason) in enumerate(BAD.items(), start=2):
        assert f"  line {line} ({path}): " in printed and reason in printed


def test_short_videos_flow_into_datasets_and_a_model(hostile_run):
    """2–3-frame videos (shorter than any clip) are padded with their last frame."""
    cache = VideoCache(hostile_run[1])
    rows = cache.rows().set_index("source").loc[["two.avi", "three.avi"]].reset_index()
    clips = ClipDataset(cache, rows, clip_len=16, label="lvh")
    batch = torch.stack([clips[i]["clip"] for i in range(len(clips))])  # (2, 16, 16, 16)
    assert batch.shape == (2, 16, 16, 16)
    assert (batch[0, 1:] == batch[0, 1:2]).all()  # the last of two frames, repeated
    evaluation = ClipDataset(cache, rows, clip_len=16, eval_clips=4)
    assert evaluation[1]["clip"].shape == (4, 16, 16, 16)
    model = Classifier(build_encoder("r3d_tiny", width=4)).eval()
    with torch.no_grad():
        logits = model(to_model_input(augment_clips(minmax_scale(batch))))
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    for mode in ("multi_instance", "simclr"):
        pairs = StudyPairDataset(cache, rows, clip_len=4, mode=mode, pairs="study")
        items = [pairs[i] for i in range(len(pairs))]
        x = torch.cat([torch.stack([it["clip_a"] for it in items]),
                       torch.stack([it["clip_b"] for it in items])])
        with torch.no_grad():
            _, z, order = PretrainModel(build_encoder("r3d_tiny", width=4), n_orderings=24)(
                to_model_input(minmax_scale(x)))
        assert torch.isfinite(z).all() and torch.isfinite(order).all()


def test_all_black_video_gives_finite_output(hostile_run):
    """Per-clip min-max of a constant clip must not divide by zero."""
    cache = VideoCache(hostile_run[1])
    rows = cache.rows().set_index("source").loc[["black.avi"]].reset_index()
    clip = ClipDataset(cache, rows, clip_len=4)[0]["clip"][None]
    assert clip.max() <= 2  # black (MJPG may leave a level or two)
    x = minmax_scale(clip)
    assert torch.isfinite(x).all() and x.max() <= 1
    with torch.no_grad():
        assert torch.isfinite(Classifier(build_encoder("r3d_tiny", width=4)).eval()(
            to_model_input(x))).all()
    assert torch.isfinite(minmax_scale(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))).all()


# --- manifests ------------------------------------------------------------------------------

MANIFEST_PROBLEMS = {
    "duplicate-row": ("a.avi,S1,P1,train,1\na.avi,S1,P1,train,1\n",
                      "line 3 [path]: duplicate path"),
    "non-binary-label": ("a.avi,S1,P1,train,2\n", "line 2 [lvh]: label 2 is not 0, 1 or blank"),
    "text-label": ("a.avi,S1,P1,train,yes\n", "line 2 [lvh]: label 'yes' is not 0, 1 or blank"),
    "conflicting-study-labels": ("a.avi,S1,P1,train,1\nb.avi,S1,P1,train,0\n",
                                 "line 2 [lvh]: study S1 has conflicting labels"),
    "patient-in-two-splits": ("a.avi,S1,P1,train,1\nb.avi,S2,P1,test,0\n",
                              "patient P1 appears in splits ['test', 'train'] (leakage)"),
}


@pytest.mark.parametrize("rows, problem", list(MANIFEST_PROBLEMS.values()),
                         ids=list(MANIFEST_PROBLEMS))
def test_bad_manifest_stops_ingest_before_anything_is_written(tmp_path, rows, problem):
    for name in ("a.avi", "b.avi"):
        write_video(tmp_path / name, echo_frames(t=4, h=24, w=32)[0], fps=30)
    (tmp_path / "m.csv").write_text("path,study_id,patient_id,split,lvh\n" + rows)
    with pytest.raises(ManifestError) as info:
        ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "cache")))
    assert problem in str(info.value) and str(tmp_path / "m.csv") in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("data", [b"", "path,study_id\nvid\xe9o.avi,S1\n".encode("latin-1")],
                         ids=["empty", "not-utf8"])
def test_unreadable_manifest_is_refused(tmp_path, data):
    (tmp_path / "m.csv").write_bytes(data)
    with pytest.raises(ManifestError, match="not a readable CSV"):
        ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "cache")))
    assert not (tmp_path / "cache").exists()


def test_nan_label_means_unlabeled_not_negative(tmp_path):
    df = pd.DataFrame({"path": [f"{k}.avi" for k in range(6)], "study_id": list("ABCDEF"),
                       "patient_id": list("ABCDEF"),
                       "split": "train", "lvh": [1, 0, np.nan, 1, 0, np.nan]})
    chosen = label_fraction_studies(df, label="lvh", fractions=[1.0])[1.0]
    assert chosen == ["A", "B", "D", "E"]  # C and F are neither positive nor negative


def test_label_fraction_leaving_one_class_fails_clearly(tiny_cache, tmp_path):
    """Fine-tuning refuses, naming the label, before any training step."""
    manifest = pd.read_csv(tiny_cache / "manifest.csv")
    manifest.loc[manifest["split"] == "train", "lvh"] = 0
    manifest.to_csv(tiny_cache / "manifest.csv", index=False)
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         encoder="r3d_tiny", width=4, workers=0, progress=False)
    with pytest.raises(ValueError, match="label 'lvh': the train split has no positive study"):
        finetune(cfg)
    assert not (tmp_path / "ft" / "model.pt").exists()



def test_stills_are_skipped_and_two_frames_locate_the_fan(hostile_run):
    """One frame has no motion to locate the fan (burned-in text would stay): a still is no
    cine and is skipped, DICOM or AVI; two frames already locate the fan."""
    _, cache, _ = hostile_run
    rows = VideoCache(cache).manifest.set_index("source")
    assert not {"one frame ü.avi", "still.dcm"} & set(rows.index)
    for source in ("two.avi", "three.avi"):
        sidecar = (cache / rows.loc[source, "path"]).with_suffix(".json")
        assert json.loads(sidecar.read_text())["preprocess"]["mask_method"] == "fan", source
