"""`echoclr info` and `echoclr ingest --dry-run`: what a cache or manifest holds, and its
warnings, without decoding anything."""

from __future__ import annotations

import pandas as pd
import pytest

from _video_fixtures import echo_frames
from echoclr import cli
from echoclr.commands.info import InfoConfig, info
from echoclr.commands import ingest as ingest_command
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data.manifest import ManifestError
from echoclr.data.video import write_video


def test_info_on_a_cache_counts_splits_views_labels_and_warns(tiny_cache, capsys):
    assert cli.main(["info", str(tiny_cache)]) == 0
    text = capsys.readouterr().out
    assert "20 patients, 20 studies, 60 videos" in text
    assert "videos per study: 3–3" in text and "n_frames: 12–12 frames" in text
    table = [line.split() for line in text.splitlines() if line.startswith(("train", "val"))]
    assert ["train", "PLAX", "36", "12", "6/6", "4/8"] in table  # lvh 1/0, severe_as 1/0
    assert "the validation split holds 4 studies" in text


def test_info_on_a_manifest_names_one_class_splits_and_missing_views(tmp_path):
    rows = [{"path": f"{k}.avi", "study_id": f"S{k}", "split": split, "view": view, "lvh": lvh}
            for k, (split, view, lvh) in enumerate([("train", "PLAX", 1), ("train", "A4C", 0),
                                                    ("val", "PLAX", 0), ("test", "PLAX", 1),
                                                    ("test", "PLAX", 0)])]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    text = info(InfoConfig(target=str(tmp_path / "m.csv")))
    assert "split 'val' has no positive study for label 'lvh'" in text
    assert "view 'A4C' is missing from split(s) ['test', 'val']" in text


def write_small_archive(root, n=12):
    root.mkdir()
    for k in range(n):
        write_video(root / f"{k}.avi", echo_frames(t=4, h=24, w=32, seed=k)[0], fps=30)
    pd.DataFrame({"path": [f"{k}.avi" for k in range(n)], "study_id": [f"S{k}" for k in range(n)],
                  "view": "PLAX", "lvh": [k % 2 for k in range(n)]}).to_csv(root / "m.csv",
                                                                          index=False)
    return root / "m.csv"


def test_dry_run_validates_and_summarises_without_decoding_or_writing(tmp_path, monkeypatch,
                                                                      capsys):
    manifest = write_small_archive(tmp_path / "a")

    def no_decoding(**kwargs):
        raise AssertionError("a dry run decodes nothing")

    monkeypatch.setattr(ingest_command, "process_video", no_decoding)
    out = tmp_path / "cache"
    assert cli.main(["ingest", str(manifest), "--out", str(out), "--dry-run", "--splits",
                     "0.5", "0.25", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "dry run" in text and "12 videos would be ingested" in text
    assert "12 patients, 12 studies, 12 videos" in text and not out.exists()
    (tmp_path / "a" / "5.avi").unlink()
    with pytest.raises(ManifestError, match="line 7 \\[path\\]: file not found"):
        ingest(IngestConfig(manifest=str(manifest), out=str(out), dry_run=True))
    assert not out.exists()
