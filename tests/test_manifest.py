"""Manifest validation (every error with its row), patient-level splits, nested fractions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echoclr.data.manifest import (
    ManifestError, check_manifest, label_fraction_studies, read_manifest, validate_manifest,
)
from echoclr.data.splits import assign_splits
from echoclr.errors import UserError


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
        "a.avi,S1,P1,train,1,0",       # line 2 ok
        "missing.avi,S2,P2,train,0,0",  # line 3: file not found
        "a.avi,S3,P3,test,0,0",        # line 4: duplicate path
        "b.avi,S4,P4,train,2,0",       # line 5: non-binary label
        "c.avi,S1,P1,train,0,0",       # line 6: study S1 conflicting lvh
        "b.avi,S5,P1,test,1,yes",      # line 7: dup path, patient P1 in two splits, bad label
        "c.avi,S6,P6,holdout,,0",      # line 8: dup path, unknown split; blank label is fine
    ]))
    problems = validate_manifest(read_manifest(p), p.parent)
    text = [str(x) for x in problems]
    expect = [
        ("line 3 [path]", "file not found"),
        ("line 4 [path]", "duplicate path"),
        ("line 5 [lvh]", "not 0, 1 or blank"),
        ("line 2 [lvh]", "study S1 has conflicting labels"),
        ("line 7 [severe_as]", "'yes' is not 0, 1 or blank"),
        ("line 2 [split]", "patient P1 appears in splits ['test', 'train'] (leakage)"),
        ("line 8 [split]", "unknown split 'holdout'"),
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
    assert any("line 2 [study_id]: blank" in t for t in text)
    assert not any("line 3" in t for t in text)  # a NaN label is a blank label


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


# --- messages a person can act on ------------------------------------------------------------

def test_problems_name_the_line_an_editor_shows(tmp_path):
    """The header is line 1, so the first data row is line 2."""
    p = write(tmp_path, "path,study_id\na.avi,S1\nmissing.avi,S2\n")
    text = [str(x) for x in validate_manifest(read_manifest(p), p.parent)]
    assert text == ["line 3 [path]: file not found: missing.avi"]


def test_text_labels_give_one_line_per_column_with_a_hint(tmp_path):
    rows = [f"{name}.avi,S{k},{'yes' if k % 2 else 'no'},{'true' if k % 3 else 'false'}"
            for k, name in enumerate("abc")]
    p = write(tmp_path, "path,study_id,lvh,severe_as\n" + "\n".join(rows) + "\n")
    with pytest.raises(ManifestError) as info:
        check_manifest(read_manifest(p), p, root=p.parent)
    assert isinstance(info.value, UserError)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 2, lines
    lvh = next(x for x in lines if "[lvh]" in x)
    assert "3 labels" in lvh and "lines 2, 3, 4" in lvh and "'yes'" in lvh and "'no'" in lvh
    assert "1 and 0" in lvh and "yes/true" in lvh


def test_ten_thousand_duplicates_give_one_summary_line(tmp_path):
    p = write(tmp_path, "path,study_id\n" + "a.avi,S1\n" * 10_000)
    with pytest.raises(ManifestError) as info:
        check_manifest(read_manifest(p), p, root=p.parent)
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines[:5]
    assert "9,999 rows" in lines[1] and "lines 3, 4, 5, 6, 7" in lines[1]
    assert "a.avi" in lines[1] and "line 2" in lines[1]  # the row it repeats


def test_one_file_under_many_spellings_is_one_file(tmp_path):
    (tmp_path / "d").mkdir()
    p = write(tmp_path, "path,study_id\n" + "".join(
        f"{s},S{k}\n" for k, s in enumerate(["a.avi", "./a.avi", "d/../a.avi",
                                              str(tmp_path / "a.avi"), "b.avi"])))
    dups = [x for x in validate_manifest(read_manifest(p), p.parent) if x.kind == "duplicate path"]
    assert [x.line for x in dups] == [3, 4, 5]


def test_a_symlink_loop_is_that_files_problem(tmp_path):
    (tmp_path / "loop.avi").symlink_to(tmp_path / "loop.avi")
    p = write(tmp_path, "path,study_id\nloop.avi,S1\na.avi,S2\n")
    problems = validate_manifest(read_manifest(p), p.parent, allowed_roots=[tmp_path])
    assert [(x.line, x.kind) for x in problems] == [(2, "file")]
    assert "symlink loop" in problems[0].reason
