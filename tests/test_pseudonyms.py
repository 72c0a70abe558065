"""Identifiers a manifest carries never reach a cache: study and patient ids become keyed
pseudonyms at ingest, source paths stay out unless asked for, and the link back is a private id
map written only where the user asks, never inside a cache or a run folder."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest

from _video_fixtures import echo_frames
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.data.dicom import hash_identifier
from echoclr.data.video import write_video
from echoclr.errors import UserError

SALT = "pepper-2d81"


def write_named_archive(root, n=4):
    """Videos in folders named after the patient; MRNs and accession numbers as ids."""
    rows = []
    for k in range(n):
        folder = root / f"MRN1234567{k}_DOE" / "20230915_ECHO"
        folder.mkdir(parents=True)
        write_video(folder / "clip.avi", echo_frames(t=6, h=24, w=32, seed=k)[0], fps=30)
        rows.append({"path": f"MRN1234567{k}_DOE/20230915_ECHO/clip.avi",
                     "study_id": f"ACC99887{k}", "patient_id": f"MRN1234567{k}",
                     "split": ["train", "val", "test", "train"][k], "lvh": k % 2})
    rows.append({"path": "MRN99999999_ROE/gone.avi", "study_id": "ACC000000",
                 "patient_id": "MRN99999999", "split": "train", "lvh": 0})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_hash_is_hmac_sha256_keyed_by_the_salt():
    expected = hmac.new(SALT.encode(), b"MRN12345678", hashlib.sha256).hexdigest()[:16]
    assert hash_identifier("MRN12345678", SALT) == expected
    assert hash_identifier(" MRN12345678 ", SALT) == expected  # stable
    assert hash_identifier("MRN12345678", "other") != expected and hash_identifier("", SALT) is None


def test_cache_manifest_holds_pseudonyms_and_no_source_paths(tmp_path):
    manifest = write_named_archive(tmp_path / "archive")
    cache = tmp_path / "cache"
    result = ingest(IngestConfig(manifest=str(manifest), out=str(cache), size=16, salt=SALT))
    rows = pd.read_csv(cache / "manifest.csv", dtype=str)
    assert set(rows["study_id"]) == {hash_identifier(f"ACC99887{k}", SALT) for k in range(4)}
    assert set(rows["patient_id"]) == {hash_identifier(f"MRN1234567{k}", SALT) for k in range(4)}
    assert "source" not in rows.columns and rows["path"].str.startswith("videos/").all()
    assert sorted(rows["manifest_line"].astype(int)) == [2, 3, 4, 5]  # the link back: lines
    report = pd.read_csv(cache / "ingest_report.csv")
    assert list(report.columns) == ["line", "reason"] and report["line"].tolist() == [6]
    for path in cache.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in (b"MRN", b"ACC", b"DOE", b"20230915", b"gone.avi"):
                assert needle not in data, (path, needle)
    assert "MRN" not in result.summary() and "line 6: file not found" in result.summary()


def test_source_paths_only_when_asked(tmp_path):
    manifest = write_named_archive(tmp_path / "archive")
    cache = tmp_path / "cache"
    ingest(IngestConfig(manifest=str(manifest), out=str(cache), size=16, salt=SALT,
                        keep_source_paths=True))
    rows = pd.read_csv(cache / "manifest.csv")
    assert rows["source"].str.startswith("MRN").all()
    report = pd.read_csv(cache / "ingest_report.csv")
    assert report["path"].tolist() == ["MRN99999999_ROE/gone.avi"]


def test_id_map_is_written_only_where_asked_and_never_inside_a_cache_or_run(tmp_path):
    manifest = write_named_archive(tmp_path / "archive")
    cache = tmp_path / "cache"
    cfg = IngestConfig(manifest=str(manifest), out=str(cache), size=16, salt=SALT)
    for inside in (cache / "ids.csv", cache / "videos" / "ids.csv"):
        with pytest.raises(UserError, match="id-map"):
            ingest(IngestConfig(**{**cfg.__dict__, "id_map": str(inside)}))
    run = tmp_path / "runs" / "lvh"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    with pytest.raises(UserError, match="run folder"):
        ingest(IngestConfig(**{**cfg.__dict__, "id_map": str(run / "sub" / "ids.csv")}))
    assert not cache.exists()
    ingest(IngestConfig(**{**cfg.__dict__, "id_map": str(tmp_path / "private" / "ids.csv")}))
    ids = pd.read_csv(tmp_path / "private" / "ids.csv", dtype=str)
    assert list(ids.columns) == ["column", "pseudonym", "original"]
    pairs = set(zip(ids["pseudonym"], ids["original"], strict=True))
    assert (hash_identifier("MRN12345671", SALT), "MRN12345671") in pairs
    assert (hash_identifier("ACC998873", SALT), "ACC998873") in pairs
    assert not list(cache.rglob("ids.csv"))
