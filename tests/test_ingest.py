"""Preprocessing and the ingest command: cache layout, report, resume, privacy."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from _video_fixtures import PHI, echo_frames, make_archive
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data.identity import file_identity
from echoclr.data.manifest import ManifestError, read_manifest, validate_manifest
from echoclr.data.preprocess import preprocess, resize_area
from echoclr.data.video import read_video, write_video
from echoclr.data.video_types import Video
from echoclr.errors import UserError

SALT = "pepper-7f3a-secret"


# --- preprocess -----------------------------------------------------------------------------

def test_preprocess_shape_and_info():
    frames = echo_frames(t=12, h=48, w=64)[0]
    out, info = preprocess(Video(frames, 30.0, {}), size=32, max_frames=10)
    assert out.dtype == np.uint8 and out.shape == (10, 32, 32)
    assert info["mask_method"] == "fan" and info["original_shape"] == [12, 48, 64]
    x0, y0, x1, y1 = info["crop_box"]
    top, bottom, left, right = info["pad"]
    assert y1 - y0 + top + bottom == x1 - x0 + left + right  # padded to a square


def test_preprocess_removes_overlay_outside_the_fan():
    with_text = echo_frames(seed=3, overlay=True)[0]
    without = echo_frames(seed=3, overlay=False)[0]
    a, _ = preprocess(Video(with_text, 30.0, {}), size=40, max_frames=100)
    b, _ = preprocess(Video(without, 30.0, {}), size=40, max_frames=100)
    np.testing.assert_array_equal(a, b)


def test_preprocess_real_cine_zeroes_burned_in_text():
    video = read_video(get_testdata_file("examples_ybr_color.dcm"))
    gray = video.frames.mean(axis=-1)
    overlay = (gray.std(axis=0) == 0) & (gray.mean(axis=0) > 40)  # static bright: text, icons
    assert overlay[:40, :60].any() and overlay[:, 280:].any()  # top-left label, right column
    scrubbed = video.frames.copy()
    scrubbed[:, overlay] = 0
    out, info = preprocess(video, size=112, max_frames=100)
    clean, _ = preprocess(Video(scrubbed, video.fps, video.meta), size=112, max_frames=100)
    assert info["mask_method"] == "fan"  # the file's region box is larger than the image
    np.testing.assert_array_equal(out, clean)  # no overlay pixel reaches the output
    assert out.shape == (30, 112, 112) and out.mean() > 5
    for corner in (out[:, :6, :6], out[:, :6, -6:], out[:, -6:, :6], out[:, -6:, -6:]):
        assert corner.max() == 0


def test_preprocess_uses_a_plausible_dicom_region():
    frames = echo_frames(t=8, h=48, w=64)[0]
    meta = {"regions": [(4, 0, 59, 47), (0, 40, 63, 47)], "region_spatial_formats": [1, 4]}
    _, info = preprocess(Video(frames, 30.0, meta), size=32, max_frames=100)
    assert info["mask_method"] == "region+fan"
    _, info = preprocess(Video(frames[:1], 30.0, meta), size=32, max_frames=100)
    assert info["mask_method"] == "region" and "single frame" in info["mask_reason"]
    off_fan = {"regions": [(0, 0, 9, 47)], "region_spatial_formats": [1]}  # a left strip
    _, info = preprocess(Video(frames, 30.0, off_fan), size=32, max_frames=100)
    assert info["mask_method"] == "fan" and "misses" in info["mask_reason"]


def test_resize_area_matches_block_mean_and_opencv():
    square = np.random.default_rng(0).integers(0, 256, (20, 60, 60), dtype=np.uint8)
    blocks = square.reshape(20, 20, 3, 20, 3).mean(axis=(2, 4))
    assert np.abs(resize_area(square, 20) - blocks).max() <= 0.5
    assert (resize_area(np.full((2, 50, 50), 77, np.uint8), 112) == 77).all()
    cv2 = pytest.importorskip("cv2")
    ours = resize_area(square, 23)
    theirs = np.stack([cv2.resize(f, (23, 23), interpolation=cv2.INTER_AREA) for f in square])
    assert np.abs(ours.astype(int) - theirs).max() <= 1


# --- ingest ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def first_run(archive, tmp_path_factory):
    cfg = IngestConfig(manifest=str(archive), out=str(tmp_path_factory.mktemp("cache")),
                       size=32, salt=SALT, accept_one_class_splits=True, keep_source_paths=True)
    return cfg, ingest(cfg)


def test_ingest_result_and_report(first_run):
    cfg, result = first_run
    reasons = result.reasons
    assert result.n_ok == 5 and result.n_skipped == 3 and not result.ok
    assert "not a readable video" in reasons["corrupt.avi"]
    assert reasons["exams é 1/clip 3.avi"] == "fps 12 < 25"
    assert reasons["gone.avi"] == "file not found"
    report = pd.read_csv(f"{cfg.out}/ingest_report.csv")
    assert list(report.columns) == ["line", "reason", "path"]
    assert dict(zip(report["path"], report["reason"], strict=True)) == reasons
    assert report["line"].tolist() == [5, 8, 9]  # the manifest's lines, header = line 1
    assert "skipped 3" in result.summary()
    assert "line 8 (corrupt.avi): not a readable" in result.summary()


def test_ingest_cache_feeds_mmap_clips(first_run, archive):
    cfg, _ = first_run
    manifest = read_manifest(f"{cfg.out}/manifest.csv")
    assert validate_manifest(manifest, cfg.out) == []
    expected = {"path", "source", "n_frames", "fps", "split", "study_id", "lvh"}
    assert expected <= set(manifest.columns)
    assert set(manifest["split"]) <= {"train", "val", "test"}
    row = manifest.set_index("source").loc["cine.dcm"]
    key = file_identity(archive.parent / "cine.dcm").key
    assert row["path"] == f"videos/{key}.npy" and row["n_frames"] == 10
    assert row["fps"] == pytest.approx(30.0, abs=0.01)
    for path, n in zip(manifest["path"], manifest["n_frames"], strict=True):
        video = np.load(f"{cfg.out}/{path}", mmap_mode="r")
        assert isinstance(video, np.memmap) and video.dtype == np.uint8
        assert video.shape == (n, 32, 32)
        assert np.asarray(video[2:6]).max() > 0
    config = json.loads(Path(cfg.out, "ingest_config.json").read_text())
    assert "salt" not in config and config["preprocessing"]["size"] == 32


def test_ingest_writes_no_identifiers(first_run, archive):
    cfg, _ = first_run
    ds = pydicom.dcmread(archive.parent / "cine.dcm")
    uids = [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
    needles = [v.encode() for v in [*PHI.values(), *uids, "Doe", SALT]]
    files = [p for p in Path(cfg.out).rglob("*") if p.is_file()]
    assert len(files) >= 2 * 5 + 3
    for path in files:
        data = path.read_bytes()
        assert not [n for n in needles if n in data], path


def test_rerun_skips_finished_videos(first_run, archive):
    cfg, first = first_run
    def stamps():
        return sorted((p.name, p.stat().st_mtime_ns) for p in Path(cfg.out, "videos").iterdir())

    before = stamps()
    again = ingest(cfg)
    assert again.n_reused == first.n_ok == again.n_ok and again.skipped == first.skipped
    assert stamps() == before  # nothing decoded or rewritten
    assert len(pd.read_csv(f"{cfg.out}/manifest.csv")) == first.n_ok


def test_parallel_view_filtered_run_matches(archive, tmp_path, first_run):
    cfg = IngestConfig(manifest=str(archive), out=str(tmp_path / "c"), size=32, salt=SALT,
                       workers=2, view="PLAX", accept_one_class_splits=True,
                       keep_source_paths=True)
    result = ingest(cfg)
    assert result.n_ok == 4 and result.n_skipped == 3
    ours = pd.read_csv(f"{cfg.out}/manifest.csv").set_index("source")
    serial = pd.read_csv(f"{first_run[0].out}/manifest.csv").set_index("source")
    assert set(ours.index) == set(serial.index) - {"exams é 1/clip 4.avi"}
    for source in ours.index:
        a = np.load(f"{cfg.out}/{ours.loc[source, 'path']}")
        b = np.load(f"{first_run[0].out}/{serial.loc[source, 'path']}")
        np.testing.assert_array_equal(a, b)


def test_cache_with_other_preprocessing_is_refused(first_run):
    cfg, _ = first_run
    with pytest.raises(ValueError, match="ingest into another folder"):
        ingest(dataclasses.replace(cfg, size=48))


def test_manifest_problems_stop_before_decoding(tmp_path):
    pd.DataFrame({"path": ["a.avi", "a.avi"], "study_id": ["S1", "S2"]}).to_csv(
        tmp_path / "m.csv", index=False)
    with pytest.raises(ManifestError, match="duplicate path"):
        ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("file_fps", "manifest_fps", "expected"), [
    (30.0, 50.0, ("file", 30.0)), (None, 50.0, ("manifest", 50.0)), (None, None, ("default", 30.0))])
def test_sidecar_says_where_the_frame_rate_came_from(tmp_path, monkeypatch, file_fps, manifest_fps,
                                                     expected):
    import echoclr.data.cache as ingest_module

    frames = np.random.default_rng(0).integers(0, 255, (12, 24, 24), dtype=np.uint8)

    class Source:  # a decoded video as a reader hands it over
        n_frames, height, width, fps, meta = 12, 24, 24, file_fps, {}

        def frames(self, stop, keep=None):
            return ((i, f) for i, f in enumerate(frames[:stop]) if keep is None or i in keep)

    monkeypatch.setattr(ingest_module, "open_video", lambda path, **kw: Source())
    status, record = ingest_module.process_video(
        path="x.avi", npy=str(tmp_path / "x.npy"), size=16, max_frames=10, min_fps=25.0,
        salt="", manifest_fps=manifest_fps)
    assert status == "ok", record
    assert (record["fps_from"], record["source_fps"]) == expected
    assert json.loads((tmp_path / "x.json").read_text())["fps_from"] == expected[0]


# --- splits drawn by ingest -----------------------------------------------------------------

def write_patients(root: Path, labels: list[int]) -> Path:
    """One tiny AVI per patient, labelled; no split column, so ingest draws the splits."""
    root.mkdir(parents=True, exist_ok=True)
    for p in range(len(labels)):
        write_video(root / f"{p}.avi", echo_frames(t=4, h=24, w=32, seed=p)[0], fps=30)
    pd.DataFrame({"path": [f"{p}.avi" for p in range(len(labels))],
                  "study_id": [f"S{p}" for p in range(len(labels))],
                  "patient_id": [f"P{p}" for p in range(len(labels))],
                  "lvh": labels}).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_drawn_splits_are_stratified_by_every_label_by_default(tmp_path):
    """16 patients, half positive: unstratified, seed 9 gave a validation split of two negative
    studies; stratified by default, every split holds both classes."""
    manifest = write_patients(tmp_path / "a", [p % 2 for p in range(16)])
    ingest(IngestConfig(manifest=str(manifest), out=str(tmp_path / "c"), size=16, seed=9))
    rows = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert rows.groupby("split")["lvh"].nunique().to_dict() == {"test": 2, "train": 2, "val": 2}


def test_a_drawn_split_without_a_class_stops_ingest_unless_accepted(tmp_path):
    manifest = write_patients(tmp_path / "a", [1, 1, 0, 0, 0, 0])
    cfg = IngestConfig(manifest=str(manifest), out=str(tmp_path / "c"), size=16)
    with pytest.raises(UserError) as info:
        ingest(cfg)
    message = str(info.value)
    assert "split 'val'" in message and "'lvh'" in message and "no positive" in message
    assert "(positive/negative studies: train 2/3, val 0/0, test 0/1)" in message
    assert "--splits" in message and "more patients" in message
    assert "--accept-one-class-splits" in message and not (tmp_path / "c").exists()
    with pytest.warns(UserWarning, match="split 'val'"):
        result = ingest(dataclasses.replace(cfg, accept_one_class_splits=True))
    assert result.n_ok == 6


# --- a cache entry follows the file, not its name -------------------------------------------

def one_video_manifest(folder: Path, t: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "x.avi", echo_frames(t=t, h=24, w=32, seed=seed)[0], fps=30)
    pd.DataFrame({"path": ["x.avi"], "study_id": ["S1"]}).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def test_a_file_replaced_in_place_is_redone(tmp_path):
    manifest = one_video_manifest(tmp_path / "a", t=8)
    cfg = IngestConfig(manifest=str(manifest), out=str(tmp_path / "c"), size=16)
    assert ingest(cfg).n_ok == 1
    one_video_manifest(tmp_path / "a", t=20, seed=1)  # same name, new content
    again = ingest(cfg)
    assert again.n_reused == 0
    assert pd.read_csv(tmp_path / "c" / "manifest.csv")["n_frames"].tolist() == [20]


def test_the_same_name_from_another_manifest_folder_is_another_file(tmp_path):
    first = one_video_manifest(tmp_path / "a", t=8)
    second = one_video_manifest(tmp_path / "b", t=20, seed=1)
    ingest(IngestConfig(manifest=str(first), out=str(tmp_path / "c"), size=16))
    result = ingest(IngestConfig(manifest=str(second), out=str(tmp_path / "c"), size=16))
    assert result.n_reused == 0
    assert pd.read_csv(tmp_path / "c" / "manifest.csv")["n_frames"].tolist() == [20]


def test_a_copy_is_cached_once_and_a_copy_in_another_split_is_leakage(tmp_path):
    for k, name in enumerate(["a.avi", "b.avi"]):
        write_video(tmp_path / name, echo_frames(t=6, h=24, w=32, seed=k)[0], fps=30)
    (tmp_path / "copy.avi").write_bytes((tmp_path / "a.avi").read_bytes())
    (tmp_path / "m.csv").write_text("path,study_id,split\na.avi,S1,train\ncopy.avi,S2,train\n"
                                    "b.avi,S3,train\n")
    result = ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "c"),
                                 size=16))
    assert result.n_ok == 2
    assert "line 3: same content as line 2" in result.summary()
    (tmp_path / "m.csv").write_text("path,study_id,split\na.avi,S1,train\ncopy.avi,S2,test\n")
    with pytest.raises(ManifestError) as info:
        ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "d"), size=16))
    assert "line 3 [path]" in str(info.value) and "line 2" in str(info.value)
    assert "leakage" in str(info.value) and not (tmp_path / "d").exists()


def test_a_symlink_loop_is_one_skipped_file(tmp_path):
    write_video(tmp_path / "a.avi", echo_frames(t=6, h=24, w=32)[0], fps=30)
    (tmp_path / "loop.avi").symlink_to(tmp_path / "loop.avi")
    (tmp_path / "m.csv").write_text("path,study_id\nloop.avi,S1\na.avi,S2\n")
    result = ingest(IngestConfig(manifest=str(tmp_path / "m.csv"), out=str(tmp_path / "c"),
                                 size=16))
    assert result.n_ok == 1 and "line 2: symlink loop" in result.summary()


@pytest.mark.parametrize("spelling", ["plax", " PLAX ", "a4c", "all", "ALL", None])
def test_ingest_selects_a_view_in_any_case_and_every_view_with_all(archive, spelling):
    from echoclr.data.ingest_plan import plan_ingest

    view = IngestConfig(manifest=str(archive), out="c", view=spelling).view
    assert view == (None if spelling in ("all", "ALL", None) else spelling.strip())
    lower = archive.with_name("lower.csv")  # beside the files; views spelled as archives do
    manifest = pd.read_csv(archive).assign(view=lambda m: " " + m["view"].str.lower())
    manifest.to_csv(lower, index=False)
    plan = plan_ingest(lower, view=view, allowed_roots=None, stratify="", seed=0,
                       fractions=(0.5, 0.25, 0.25))
    lines = set(plan.rows["_line"]) | {s.line for s in plan.skipped}  # kept: cached or skipped
    wanted = manifest["view"].str.strip() == (view or "").lower() if view else \
        pd.Series(True, index=manifest.index)
    assert lines == {k + 2 for k in manifest.index[wanted]}  # editor lines: header is line 1
    assert len(lines) == {"plax": 7, "a4c": 1, None: 8}[view.lower() if view else None]


def test_ingest_of_a_view_no_row_holds_names_the_views_and_writes_nothing(archive, tmp_path,
                                                                         capsys):
    from echoclr.cli import main

    assert main(["ingest", str(archive), "--out", str(tmp_path / "c"), "--view", "PSAX"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "no row of view 'PSAX'" in err and "PLAX (7 rows)" in err and "--view all" in err
    assert not (tmp_path / "c").exists()
