"""Identifiers a manifest carries never reach a cache: study and patient ids become keyed
pseudonyms at ingest, source paths stay out unless asked for, and the link back is a private id
map written only where the user asks, never inside a cache or a run folder."""

from __future__ import annotations

import hashlib
import hmac
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image

from _video_fixtures import echo_frames, write_dicom
from echoclr import cli
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
            data = text_bytes(path)
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


# --- end to end: a PACS export with identifiers everywhere ----------------------------------

PACS_SALT = "pacs-salt-5c2e"
FOLDER_PHI = {"PatientName": "DOE^JOHN", "PatientBirthDate": "19510203",
              "StudyDate": "20230915", "InstitutionName": "Mercy Heart Institute"}


def write_phi_pacs(root: Path) -> tuple[list[str], Path]:
    """10 patients, one study of two cines each, in folders named MRN…_DOE/2023…_ECHO, with the
    MRN, accession number, name and dates in the tags; labels keyed by accession. Returns every
    string that must not reach a cache or run folder, and the labels table."""
    needles, labels = [], []
    for p in range(10):
        mrn, accession, day = f"MRN1234567{p}", f"ACC99887{p}", f"202309{10 + p}"
        folder = root / f"{mrn}_DOE" / f"{day}_ECHO"
        folder.mkdir(parents=True)
        uid = pydicom.uid.generate_uid()
        for k in range(2):
            path = write_dicom(folder / f"IM{k:04d}", echo_frames(t=8, h=32, w=40,
                                                                  seed=10 * p + k)[0],
                               StudyInstanceUID=uid, PatientID=mrn, AccessionNumber=accession,
                               **(FOLDER_PHI | {"StudyDate": day}))
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            needles += [ds.SOPInstanceUID, ds.SeriesInstanceUID]
        needles += [mrn, mrn[3:], accession, accession[3:], day, f"{day[:4]}-{day[4:6]}-{day[6:]}",
                    f"{mrn}_DOE", f"{day}_ECHO", uid]
        labels.append({"accession": accession, "lvh": p % 2})
    needles += ["DOE", "JOHN", "Mercy", "19510203", "1951-02-03", PACS_SALT]
    pd.DataFrame(labels).to_csv(root.parent / "labels.csv", index=False)
    return needles, root.parent / "labels.csv"


def _npy_text_bytes(stream) -> bytes:
    """An .npy file's header, and its payload only where it holds strings or objects."""
    version = np.lib.format.read_magic(stream)
    start = stream.tell()
    if version not in ((1, 0), (2, 0)):  # a header this reader cannot parse: keep it all
        return stream.read()
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    dtype = read_header(stream)[2]
    header_end = stream.tell()
    stream.seek(start)
    header = stream.read(header_end - start)
    return header + (stream.read() if dtype.kind in "USOV" else b"")


def text_bytes(path: Path) -> bytes:
    """The raw bytes of a file that can carry text: all of a text file, and of a binary file
    everything but its numeric payload (PNG image data, tensor storages, numeric arrays). Pixels,
    weights and deflate streams hold any 3-byte run such as b"DOE" by chance (about one in 2**24
    per offset), so scanning them would fail on noise, not on a leak."""
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".png":
        kept, at = [], 8  # chunks: 4-byte length, 4-byte type, data, 4-byte CRC
        while at < len(data):
            length = int.from_bytes(data[at:at + 4], "big")
            if data[at + 4:at + 8] != b"IDAT":
                kept.append(data[at + 4:at + 8 + length])
            at += 12 + length
        return b"".join(kept)
    if suffix == ".npy":
        with path.open("rb") as stream:
            return _npy_text_bytes(stream)
    if suffix in (".npz", ".pt"):
        kept = []
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                kept.append(name.encode())
                if suffix == ".npz":
                    with archive.open(name) as stream:
                        kept.append(_npy_text_bytes(stream))
                elif not re.search(r"/data/\d+$", name):  # tensor storages are numbers
                    kept.append(archive.read(name))
        return b"".join(kept)
    return data


def decoded_texts(path: Path) -> list[str]:
    """Every text a file holds, decoded as its format stores it (numpy's UTF-32 unicode arrays,
    parquet columns, tensors' key names, PNG text chunks), plus its raw bytes where they can
    carry text (``text_bytes``)."""
    texts = [text_bytes(path).decode("latin-1")]
    suffix = path.suffix
    if suffix in (".npz", ".npy"):
        data = np.load(path, allow_pickle=False)
        arrays = [data[k] for k in data.files] if suffix == ".npz" else [data]
        texts += [" ".join(map(str, a.ravel())) for a in arrays if a.dtype.kind in "USO"]
        texts += list(getattr(data, "files", []))
    elif suffix == ".parquet":
        texts.append(pd.read_parquet(path).to_csv())
    elif suffix == ".pt":
        state = torch.load(path, weights_only=True, map_location="cpu")
        texts += [str(k) for k in (state if isinstance(state, dict) else [])]
    elif suffix == ".png":
        with Image.open(path) as image:
            texts += [f"{k}={v}" for k, v in image.info.items()]
    return texts


def test_no_identifier_folder_name_or_date_reaches_a_cache_or_run_folder(tmp_path):
    """scan → ingest → finetune → evaluate → embed, and a hand-written manifest with raw MRNs,
    accession numbers and identifying paths → ingest → embed: every output file decoded, none
    holds an identifier, a folder name or a date."""
    pacs = tmp_path / "pacs"
    needles, labels = write_phi_pacs(pacs)
    manifest = pacs / "manifest.csv"
    assert cli.main(["scan", str(pacs), "--out", str(manifest), "--labels", str(labels),
                     "--salt", PACS_SALT, "--id-map", str(tmp_path / "private" / "scan_ids.csv")
                     ]) == 0
    raw = pd.read_csv(manifest)  # the private manifest: pseudonyms, identifying paths
    raw["study_id"] = raw["path"].str.extract(r"MRN1234567(\d)")[0].radd("ACC99887")
    raw["patient_id"] = raw["path"].str.extract(r"(MRN\d+)")[0]
    raw.drop(columns=["_pseudonymous"]).assign(view="PLAX").to_csv(pacs / "by_hand.csv",
                                                                    index=False)
    out = tmp_path / "outputs"
    split = ["--splits", "0.5", "0.25", "0.25", "--salt", PACS_SALT, "--size", "16"]
    common = ["--precision", "fp32", "--device", "cpu"]
    assert cli.main(["ingest", str(manifest), "--out", str(out / "cache"), *split]) == 0
    assert cli.main(["ingest", str(pacs / "by_hand.csv"), "--out", str(out / "cache_by_hand"),
                     *split, "--id-map", str(tmp_path / "private" / "ids.csv")]) == 0
    assert cli.main(["finetune", str(out / "cache"), "--out", str(out / "ft"), "--encoder",
                     "r3d_tiny", "--width", "4", "--clip-len", "4", "--batch-size", "8",
                     "--epochs", "1", "--val-clips", "1", "--eval-clips", "1", "--workers", "0",
                     "--no-progress", *common]) == 0
    assert cli.main(["evaluate", str(out / "ft"), "--n-resamples", "20", "--clips", "1",
                     "--precision", "fp32"]) == 0
    for cache in ("cache", "cache_by_hand"):
        assert cli.main(["embed", str(out / "ft"), str(out / cache), "--out",
                         str(out / "ft" / f"embeddings_{cache}.npz"), "--clips", "1",
                         *common]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert {".csv", ".json", ".npz", ".npy", ".pt", ".png"} <= suffixes, suffixes
    leaks = {(str(p.relative_to(out)), n) for p in files for text in decoded_texts(p)
             for n in needles if n in text}
    assert not leaks
    ids = pd.read_csv(tmp_path / "private" / "ids.csv", dtype=str)
    assert {"MRN12345670", "ACC998870"} <= set(ids["original"])  # the link back, kept apart
    scan_ids = pd.read_csv(tmp_path / "private" / "scan_ids.csv", dtype=str)
    assert "MRN12345673" in set(scan_ids["original"])
