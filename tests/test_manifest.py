"""Manifest validation (every error with its row), patient-level splits, nested fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoclr.data.manifest import (
    ManifestError, assign_splits, check_manifest, label_fraction_studies, read_manifest,
    validate_manifest,
)


def write(tmp_path, text):
    (tmp_path / "a.avi").write_bytes(b"x")
    (tmp_path / "b.avi").write_bytes(b"x")
    (tmp_path / "c.avi").write_bytes(b"x")
    p = tmp_path / "manifest.csv"
    p.write_text(text)
    return p


def test_every_listed_error_is_reported_with_its_row(tmp_path):
    p = write(tmp_path, "\n".join([
        "path,study_id,patient_id,split,lvh,severe_as",
        "a.avi,S1,P1,train,1,0",       # row 1 ok
        "missing.avi,S2,P2,train,0,0",  # row 2: file not found
        "a.avi,S3,P3,test,0,0",        # row 3: duplicate path
        "b.avi,S4,P4,train,2,0",       # row 4: non-binary label
        "c.avi,S1,P1,train,0,0",       # row 5: study S1 conflicting lvh
        "b.avi,S5,P1,test,1,yes",      # row 6: dup path, patient P1 in two splits, bad label
        "c.avi,S6,P6,holdout,,0",      # row 7: dup path, unknown split; blank label is fine
    ]))
    problems = validate_manifest(read_manifest(p), p.parent)
    text = [str(x) for x in problems]
    expect = [
        ("row 2 [path]", "file not found"),
        ("row 3 [path]", "duplicate path"),
        ("row 4 [lvh]", "not 0, 1 or blank"),
        ("row 1 [lvh]", "study S1 has conflicting labels"),
        ("row 6 [severe_as]", "'yes' is not 0, 1 or blank"),
        ("row 1 [split]", "patient P1 appears in splits ['test', 'train'] (leakage)"),
        ("row 7 [split]", "unknown split 'holdout'"),
    ]
    for where, what in expect:
        assert any(t.startswith(where) and what in t for t in text), (where, what, text)
    with pytest.raises(ManifestError, match="problem"):
        check_manifest(read_manifest(p), p, root=p.parent)


def test_missing_required_columns(tmp_path):
    p = write(tmp_path, "file,study\na.avi,S1\n")
    problems = validate_manifest(read_manifest(p), p.parent)
    assert {x.column for x in problems} == {"path", "study_id"}


def test_nan_and_blank_ids(tmp_path):
    p = write(tmp_path, "path,study_id,lvh\na.avi,,1\nb.avi,S2,nan\n")
    text = [str(x) for x in validate_manifest(read_manifest(p), p.parent)]
    assert any("row 1 [study_id]: blank" in t for t in text)
    assert not any("row 2" in t for t in text)  # a NaN label is a blank label


def test_paths_outside_allowed_roots_refused(tmp_path):
    outside = tmp_path.parent / "elsewhere.avi"
    p = write(tmp_path, f"path,study_id\n{outside},S1\n../x.avi,S2\na.avi,S3\n")
    text = [str(x) for x in validate_manifest(read_manifest(p), p.parent,
                                              allowed_roots=[tmp_path])]
    assert sum("outside the allowed roots" in t for t in text) == 2


def cohort(n_patients=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = int(rng.random() < 0.3)
        for s in range(1 + (p % 2)):  # some patients have two studies
            for v in range(2):
                rows.append({"path": f"{p}_{s}_{v}.avi", "study_id": f"S{p}_{s}",
                             "patient_id": f"P{p}", "lvh": label})
    return pd.DataFrame(rows)


def test_splits_are_by_patient_stratified_and_seeded():
    df = assign_splits(cohort(), stratify="lvh", seed=3)
    assert df.groupby("patient_id")["split"].nunique().max() == 1  # no leakage
    share = df.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.75, abs=0.02)
    assert share["val"] == pytest.approx(0.10, abs=0.02)
    pos = df.drop_duplicates("patient_id").groupby("split")["lvh"].mean()
    assert pos.max() - pos.min() < 0.05  # stratified
    again = assign_splits(cohort(), stratify="lvh", seed=3)
    assert (again["split"] == df["split"]).all()
    other = assign_splits(cohort(), stratify="lvh", seed=4)
    assert (other["split"] != df["split"]).any()
    assert validate_manifest(df, None) == []


def test_existing_splits_are_kept():
    df = cohort(20)
    df["split"] = np.where(df["patient_id"] == "P0", "test", None)
    out = assign_splits(df, seed=0)
    assert (out.loc[out["patient_id"] == "P0", "split"] == "test").all()
    assert out["split"].notna().all()


def test_label_fractions_nested_stratified_and_both_classes():
    df = assign_splits(cohort(400), stratify="lvh", seed=0)
    fractions = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    subsets = label_fraction_studies(df, label="lvh", fractions=fractions, seed=0)
    train_studies = df[df["split"] == "train"].drop_duplicates("study_id")
    for small, big in zip(fractions, fractions[1:]):
        assert set(subsets[small]) <= set(subsets[big])
    for f, ids in subsets.items():
        labels = train_studies.set_index("study_id").loc[ids, "lvh"]
        assert labels.nunique() == 2
        assert len(ids) == pytest.approx(f * len(train_studies), abs=2)
    assert set(subsets[1.0]) == set(train_studies["study_id"])
    again = label_fraction_studies(df, label="lvh", fractions=fractions, seed=0)
    assert again == subsets


def test_label_fraction_impossible_with_one_class():
    df = cohort(20)
    df["lvh"] = 0
    df["split"] = "train"
    with pytest.raises(ValueError, match="no positive study"):
        label_fraction_studies(df, label="lvh", fractions=[0.1], seed=0)
