"""Which videos a readout learns from, called directly: the drawn fraction, the validation
fraction, the view, the checks before training and the fingerprint of the labeled studies."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from conftest import make_cache
from echoclr.data.cache import VideoCache
from echoclr.data.manifest import label_fraction_studies
from echoclr.data.selection import check_task, check_view, select_rows, studies_fingerprint
from echoclr.errors import UserError


@pytest.fixture
def cache(tmp_path) -> VideoCache:
    root = make_cache(tmp_path / "cache", n_studies=40, videos_per_study=2)
    manifest = pd.read_csv(root / "manifest.csv")
    manifest.loc[manifest["study_id"].isin(["S010", "S011", "S016", "S017"]), "view"] = "A4C"
    manifest.to_csv(root / "manifest.csv", index=False)
    return VideoCache(root)


def test_training_rows_are_the_drawn_fraction_and_validation_the_labeled_val_studies(cache):
    train, val = select_rows(cache, task="lvh", fraction=0.5, fraction_seed=3, view="PLAX")
    every = cache.rows("train", "PLAX")
    drawn = label_fraction_studies(every, label="lvh", fractions=[0.5], seed=3)[0.5]
    assert set(train["study_id"]) == set(drawn) and len(train) == every["study_id"].isin(
        drawn).sum()
    assert set(val["split"]) == {"val"} and set(val["view"]) == {"PLAX"}
    assert set(val["study_id"]) == set(cache.rows("val", "PLAX")["study_id"])
    assert list(train.index) == list(range(len(train)))  # fresh index: rows line up with arrays
    assert list(val.index) == list(range(len(val)))
    _, every_view_val = select_rows(cache, task="lvh", fraction=1.0, fraction_seed=0, view=None)
    assert set(every_view_val["view"]) == {"PLAX", "A4C"}


def test_a_validation_fraction_draws_nested_validation_studies_with_the_draws_seed(cache):
    _, full = select_rows(cache, task="lvh", fraction=1.0, fraction_seed=1, view=None)
    _, half = select_rows(cache, task="lvh", fraction=1.0, fraction_seed=1, view=None,
                          val_fraction=0.5)
    expected = label_fraction_studies(full.assign(split="train"), label="lvh",
                                      fractions=[0.5], seed=1)[0.5]
    assert set(half["study_id"]) == set(expected)
    assert 0 < half["study_id"].nunique() < full["study_id"].nunique()
    assert set(half["study_id"]) <= set(full["study_id"]) and set(half["lvh"]) == {0, 1}
    _, other = select_rows(cache, task="lvh", fraction=1.0, fraction_seed=2, view=None,
                           val_fraction=0.5)
    assert set(other["study_id"]) != set(half["study_id"])  # the seed draws them
    _, same = select_rows(cache, task="lvh", fraction=1.0, fraction_seed=1, view=None,
                          val_fraction=1.0)
    assert set(same["study_id"]) == set(full["study_id"])


def test_a_near_miss_task_gets_its_spelling_and_a_view_that_is_absent_its_counts(cache):
    with pytest.raises(UserError, match=r"no label column 'lhv' .*did you mean --task lvh\?"):
        check_task(cache, "lhv")
    with pytest.raises(UserError) as err:
        check_task(cache, "ejection_fraction")
    assert "did you mean" not in str(err.value) and "lvh, severe_as" in str(err.value)
    with pytest.raises(UserError, match=r"PLAX \(72 videos\), A4C \(8 videos\)"):
        check_view(cache, "A2C")
    check_view(cache, None)
    check_view(cache, "a4c")  # any case


def test_a_cache_without_a_view_column_takes_any_view(tmp_path):
    root = make_cache(tmp_path / "c", n_studies=10)
    manifest = pd.read_csv(root / "manifest.csv").drop(columns="view")
    manifest.to_csv(root / "manifest.csv", index=False)
    check_view(VideoCache(root), "PLAX")  # nothing to filter on: no error


def test_one_class_training_split_counts_studies_not_videos(cache, tmp_path):
    manifest = pd.read_csv(cache.root / "manifest.csv")
    train = manifest["split"] == "train"
    manifest.loc[train, "lvh"] = 0
    manifest.loc[train & (manifest["study_id"] == "S000"), "lvh"] = 1  # one positive study
    manifest.to_csv(cache.root / "manifest.csv", index=False)
    train_rows, _ = select_rows(VideoCache(cache.root), task="lvh", fraction=1.0,
                                fraction_seed=0, view=None)
    assert train_rows["study_id"].nunique() == 24
    manifest.loc[train, "lvh"] = 0
    manifest.to_csv(cache.root / "manifest.csv", index=False)
    with pytest.raises(UserError, match=r"the train split has no positive study \(0 positive, "
                                        r"24 negative labeled studies\), and training needs"):
        select_rows(VideoCache(cache.root), task="lvh", fraction=1.0, fraction_seed=0,
                    view=None)


def test_the_fingerprint_is_the_hash_of_the_sorted_study_ids():
    rows = pd.DataFrame({"study_id": ["S2", "S1", "S2", "S10"]})
    want = hashlib.sha256("S1\nS10\nS2".encode()).hexdigest()[:16]
    assert studies_fingerprint(rows) == want
    assert studies_fingerprint(rows.iloc[::-1]) == want
    assert studies_fingerprint(rows.iloc[:2]) != want
