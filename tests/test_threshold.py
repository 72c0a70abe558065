"""evaluate's decision threshold is Youden's J on the validation studies, applied fixed to test.

Study scores are recomputed here by running the model on hand-cut clips, and J is maximised by
a naive loop over every cut point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from _model_fixtures import tiny_classifier, write_tiny_model
from conftest import make_cache
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run

CLIP_LEN, CLIPS = 4, 2


def study_scores(model, cache, split: str) -> pd.DataFrame:
    """Per study: label and mean over videos of the mean sigmoid over evenly spaced clips."""
    manifest = pd.read_csv(cache / "manifest.csv", dtype={"study_id": str})
    rows = manifest[manifest["split"] == split]
    scores = []
    for path in rows["path"]:
        video = np.load(cache / path).astype(np.float32)
        starts = [int(round(s)) for s in np.linspace(0, len(video) - CLIP_LEN, CLIPS)]
        clips = np.stack([video[s:s + CLIP_LEN] for s in starts])
        lo = clips.min(axis=(1, 2, 3), keepdims=True)
        hi = clips.max(axis=(1, 2, 3), keepdims=True)
        x = torch.from_numpy((clips - lo) / (hi - lo))[:, None].repeat(1, 3, 1, 1, 1)
        with torch.no_grad():
            scores.append(torch.sigmoid(model(x)).mean().item())
    table = rows.assign(y_score=scores).groupby("study_id")
    return pd.DataFrame({"y_true": table["lvh"].first(), "y_score": table["y_score"].mean()})


def naive_youden(y: np.ndarray, s: np.ndarray) -> float:
    """The cut point t maximising sensitivity + specificity - 1 of ``s >= t``; ties: highest t."""
    best_j, best_t = -np.inf, None
    for t in sorted(set(s.tolist()), reverse=True):
        called = s >= t
        j = (called & (y == 1)).sum() / (y == 1).sum() + (~called & (y == 0)).sum() / (
            y == 0).sum() - 1
        if j > best_j + 1e-12:
            best_j, best_t = j, t
    return best_t


def spread_classifier(cache) -> torch.nn.Module:
    """The seeded tiny classifier with its logit rescaled to spread the cached videos'
    probabilities over (0, 1) instead of crowding them at one value."""
    model = tiny_classifier(seed=5)
    x = torch.from_numpy(np.stack([np.load(p)[:CLIP_LEN] for p in sorted(
        (cache / "videos").glob("*.npy"))]).astype(np.float32) / 255)
    with torch.no_grad():
        logits = model(x[:, None].repeat(1, 3, 1, 1, 1))
        model.head.weight.div_(logits.std())
        model.head.bias.sub_(logits.mean()).div_(logits.std())
    return model


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("threshold")
    cache = make_cache(tmp_path / "cache", n_studies=40, videos_per_study=2)
    model = spread_classifier(cache)
    run = write_tiny_model(tmp_path / "run", model=model, clip_len=CLIP_LEN, eval_clips=CLIPS)
    result = evaluate_run(EvaluateConfig(run=str(run), cache=str(cache), split="test",
                                         clips=CLIPS, n_resamples=20, precision="fp32",
                                         device="cpu"))
    return result, model, cache, run


def test_threshold_is_youden_on_validation_studies(evaluated):
    result, model, cache, run = evaluated
    val = study_scores(model, cache, "val")
    test = study_scores(model, cache, "test")
    expected = naive_youden(val["y_true"].to_numpy(), val["y_score"].to_numpy())
    on_test = naive_youden(test["y_true"].to_numpy(), test["y_score"].to_numpy())
    assert abs(expected - on_test) > 1e-4  # the two splits would give different thresholds
    assert result["threshold"] == pytest.approx(expected, rel=1e-5)
    assert "validation" in result["threshold_rule"]
    saved = pd.read_csv(run / "val_study_predictions.csv", dtype={"study_id": str})
    assert saved["study_id"].tolist() == val.index.tolist()


def test_validation_threshold_is_applied_fixed_to_the_test_studies(evaluated):
    result, model, cache, _ = evaluated
    val = study_scores(model, cache, "val")
    test = study_scores(model, cache, "test")
    threshold = naive_youden(val["y_true"].to_numpy(), val["y_score"].to_numpy())
    y, called = test["y_true"].to_numpy(), test["y_score"].to_numpy() >= threshold
    at = result["study"]["at_threshold"]
    assert at["sensitivity"] == pytest.approx((called & (y == 1)).sum() / (y == 1).sum())
    assert at["specificity"] == pytest.approx((~called & (y == 0)).sum() / (y == 0).sum())
    assert result["study"]["n"] == len(test)
