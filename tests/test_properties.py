"""Laws that hold for every input, checked on inputs hypothesis draws (few examples: fast).

AUROC: equal to scikit-learn's and invariant to strictly increasing transforms of the score.
Label fractions: nested, both classes in each, the documented size per class, seeded.
NT-Xent: equal to a naive double loop for any batch size and study layout, symmetric in its two
views, and invariant to the order of the pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from echoclr.data.manifest import label_fraction_studies
from echoclr.losses import nt_xent
from echoclr.metrics import auroc
from test_losses import naive_nt_xent

FEW = settings(max_examples=30, deadline=None, database=None)  # no example files in the tree

# --- AUROC ------------------------------------------------------------------------------------

MONOTONE = {
    "affine": lambda s: 3.0 * s - 7.0,
    "exp": lambda s: np.exp(s / 10.0),
    "cubic": lambda s: s ** 3 + s,
    "arctan": np.arctan,
}


@st.composite
def labelled_scores(draw):
    """(y_true, y_score): both classes, integer-valued scores so ties are common."""
    n = draw(st.integers(2, 40))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[0], y[1] = 0, 1
    s = draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n))
    return np.array(y), np.array(s, dtype=float)


@FEW
@given(labelled_scores(), st.sampled_from(sorted(MONOTONE)))
def test_auroc_equals_sklearn_and_ignores_monotone_transforms(data, transform):
    y, s = data
    value = auroc(y, s)
    assert value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc(y, MONOTONE[transform](s)) == pytest.approx(value, abs=1e-12)
    assert auroc(y, -s) == pytest.approx(1 - value, abs=1e-12)  # reversing the order


# --- label fractions --------------------------------------------------------------------------


@st.composite
def cohorts(draw):
    """A manifest: training studies of both classes (1-3 videos each), some unlabeled training
    studies and some studies of other splits."""
    rows = []
    n_neg, n_pos = draw(st.integers(1, 25)), draw(st.integers(1, 25))
    labels = [0] * n_neg + [1] * n_pos + [np.nan] * draw(st.integers(0, 3))
    for i, label in enumerate(labels):
        for v in range(draw(st.integers(1, 3))):
            rows.append({"study_id": f"S{i}", "path": f"s{i}_{v}.npy", "split": "train",
                         "lvh": label})
    for i in range(draw(st.integers(0, 4))):
        rows.append({"study_id": f"V{i}", "path": f"v{i}.npy", "split": "val", "lvh": i % 2})
    df = pd.DataFrame(rows)
    df["patient_id"] = df["study_id"]
    return df.sample(frac=1.0, random_state=draw(st.integers(0, 100))), n_neg, n_pos


@FEW
@given(cohorts(), st.lists(st.floats(0.01, 1.0), min_size=1, max_size=5, unique=True),
       st.integers(0, 2**31 - 1))
def test_label_fractions_are_nested_and_hold_both_classes(cohort, fractions, seed):
    df, n_neg, n_pos = cohort
    subsets = label_fraction_studies(df, label="lvh", fractions=fractions, seed=seed)
    assert sorted(subsets) == sorted(fractions)
    label = df.drop_duplicates("study_id").set_index("study_id")["lvh"]
    train_labelled = set(df[(df["split"] == "train") & df["lvh"].notna()]["study_id"])
    ordered = sorted(fractions)
    for small, big in zip(ordered, ordered[1:]):
        assert set(subsets[small]) <= set(subsets[big])
    for f, ids in subsets.items():
        assert len(ids) == len(set(ids)) and set(ids) <= train_labelled
        counts = label[ids].value_counts()
        assert counts.get(0, 0) == max(1, round(f * n_neg))
        assert counts.get(1, 0) == max(1, round(f * n_pos))
    assert label_fraction_studies(df, label="lvh", fractions=fractions, seed=seed) == subsets


# --- NT-Xent ----------------------------------------------------------------------------------


@st.composite
def pair_batches(draw):
    """(z_a, z_b, study): 1-8 pairs of 4-d projections; study ids from a small pool, so pairs
    of one study are common."""
    b = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    z_a, z_b = torch.randn(b, 4, generator=g), torch.randn(b, 4, generator=g)
    study = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=b, max_size=b)))
    return z_a, z_b, study


@FEW
@given(pair_batches(), st.sampled_from([0.05, 0.2, 1.0]), st.booleans())
def test_nt_xent_equals_naive_loop_for_any_batch_and_study_layout(batch, temperature, masked):
    z_a, z_b, study = batch
    study = study if masked else None
    got = nt_xent(z_a, z_b, temperature=temperature, study=study).item()
    expected = naive_nt_xent(z_a, z_b, temperature, study)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)


@FEW
@given(pair_batches(), st.data())
def test_nt_xent_is_symmetric_in_its_views_and_the_order_of_pairs(batch, data):
    z_a, z_b, study = batch
    loss = nt_xent(z_a, z_b, temperature=0.1, study=study).item()
    assert nt_xent(z_b, z_a, temperature=0.1, study=study).item() == pytest.approx(
        loss, rel=1e-5, abs=1e-6)
    order = torch.tensor(data.draw(st.permutations(range(len(study)))))
    assert nt_xent(z_a[order], z_b[order], temperature=0.1, study=study[order]).item() == \
        pytest.approx(loss, rel=1e-5, abs=1e-6)
