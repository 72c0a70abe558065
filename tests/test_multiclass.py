"""Multi-class tasks (a categorical column such as the echo view) through probe, finetune and
evaluate: the probe's head is the multinomial fit of the features, evaluate's per-class and macro
AUROC are scikit-learn's on its own predictions, their intervals a naive study bootstrap's, the
loss is weighted cross-entropy, labels come from ``view_given`` once a view model has filled
``view``, and the commands that score one probability refuse a multi-class model in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.metrics import confusion_matrix, roc_auc_score

from _model_fixtures import crash_after_epoch
from echoclr.class_metrics import evaluate_classes
from echoclr.cli import main
from echoclr.commands.finetune import FinetuneConfig
from echoclr.data.cache import VideoCache, write_manifest
from echoclr.data.categorical import (
    CLASS_COLUMN,
    class_labels,
    encode,
    fraction_studies,
    is_categorical,
    select_videos,
    task_classes,
)
from echoclr.errors import UserError
from echoclr.features import clip_features
from echoclr.finetuning import train_step
from echoclr.losses import balanced_class_weight, smoothed_ce
from echoclr.models import Classifier, build_encoder
from echoclr.view_model import fit_view_model
from echoclr.weights import load_classifier

VIEWS = ("A2C", "A4C", "PLAX")
TINY = ["--encoder", "r3d_tiny", "--width", "4", "--clip-len", "4", "--period", "2",
        "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def cache(three_view_cache):
    return three_view_cache


def copy_cache(cache, tmp_path):
    shutil.copytree(cache, tmp_path / "cache")
    return tmp_path / "cache"


# --- the task and its labels ----------------------------------------------------------------

def test_a_text_column_is_categorical_and_a_binary_one_is_not():
    df = pd.DataFrame({"view": ["plax", " A4C", None, "unknown", "A2C"],
                       "lvh": [0, 1, np.nan, 1, 0], "grade": ["1", "0", "", None, "1"]})
    assert is_categorical(df, "view") and not is_categorical(df, "lvh")
    assert not is_categorical(df, "grade") and not is_categorical(df, "absent")
    assert class_labels(df, "view").tolist() == ["PLAX", "A4C", "", "", "A2C"]
    assert task_classes(df, "view") == VIEWS
    assert encode(df, "view", VIEWS)[CLASS_COLUMN].tolist() == [2, 1, -1, -1, 0]


def test_labels_come_from_view_given_once_a_view_model_filled_view():
    df = pd.DataFrame({"view": ["PLAX", "PLAX", "A4C"], "view_given": ["A2C", "", "A4C"]})
    assert class_labels(df, "view").tolist() == ["A2C", "", "A4C"]  # not the predictions


def test_label_fractions_of_studies_are_seeded_and_nested():
    rows = pd.DataFrame({"study_id": [f"S{k // 2}" for k in range(40)],
                         CLASS_COLUMN: [k % 3 if k < 36 else 0 if k < 38 else -1
                                        for k in range(40)]})
    labeled = {f"S{k}" for k in range(19)}  # S18: class 0 only; S19: unlabeled videos only
    small, large = (fraction_studies(rows, fraction=f, seed=3) for f in (0.25, 0.5))
    assert set(small) <= set(large) <= labeled and (len(small), len(large)) == (5, 10)
    assert fraction_studies(rows, fraction=0.25, seed=3) == small
    assert fraction_studies(rows, fraction=0.25, seed=4) != small
    assert set(fraction_studies(rows, fraction=1.0, seed=0)) == labeled


def view_rows(split: str, n_studies: int, views_of_study, prefix: str = "S") -> pd.DataFrame:
    """Two videos a study; ``views_of_study(k)`` gives the two labels of study k."""
    rows = [{"study_id": f"{prefix}{k}", "patient_id": f"P{prefix}{k}", "split": split,
             "path": f"{prefix}{k}_{j}.npy", "view": view}
            for k in range(n_studies) for j, view in enumerate(views_of_study(k))]
    return pd.DataFrame(rows)


def test_select_videos_keeps_the_labeled_videos_of_the_drawn_studies():
    train = view_rows("train", 12, lambda k: (VIEWS[k % 3],
                                              "" if k % 4 == 0 else VIEWS[(k + 1) % 3].lower()))
    val = view_rows("val", 3, lambda k: (VIEWS[k], "unknown"), prefix="V")
    manifest = pd.concat([train, val])
    got, got_val, classes = select_videos(manifest, train, val, task="view", fraction=0.5,
                                          fraction_seed=1, source=Path("m.csv"))
    assert classes == VIEWS
    drawn = fraction_studies(encode(train, "view", VIEWS), fraction=0.5, seed=1)
    want = train[train["study_id"].isin(drawn) & (train["view"] != "")]
    assert sorted(got["path"]) == sorted(want["path"]) and len(drawn) == 6
    assert got[CLASS_COLUMN].tolist() == [VIEWS.index(v.upper()) for v in
                                          want.set_index("path").loc[got["path"], "view"]]
    assert list(got.index) == list(range(len(got)))
    assert sorted(got_val["path"]) == ["V0_0.npy", "V1_0.npy", "V2_0.npy"]  # no "unknown"
    assert list(got_val.index) == [0, 1, 2] and (got_val[CLASS_COLUMN] == [0, 1, 2]).all()
    other = select_videos(manifest, train, val, task="view", fraction=0.5, fraction_seed=2,
                          source=Path("m.csv"))[0]
    assert sorted(other["path"]) != sorted(got["path"])  # the draw follows fraction_seed


def test_select_videos_names_the_split_and_class_short_of_videos():
    val = view_rows("val", 2, lambda k: ("A4C", "PLAX"), prefix="V")  # no A2C in val
    train = view_rows("train", 4, lambda k: ("A2C" if k < 2 else "A4C", "PLAX"))  # 2, 2, 4
    kw = dict(task="view", fraction=1.0, fraction_seed=0, source=Path("/data/m.csv"))
    with pytest.raises(UserError, match=r"/data/m.csv: .*the val split .* of A2C \(A2C 0"):
        select_videos(pd.concat([train, val]), train, val, **kw)
    got, got_val, _ = select_videos(pd.concat([train, val]), train, val, check_val=False, **kw)
    assert (got[CLASS_COLUMN] == 0).sum() == 2 and len(got_val) == 4
    one = train[~((train["study_id"] == "S1") & (train["view"] == "A2C"))]  # A2C: 1 video
    with pytest.raises(UserError, match=r"the train split has fewer than 2 .* of A2C"):
        select_videos(pd.concat([one, val]), one, val, check_val=False, **kw)
    two = view_rows("train", 2, lambda k: ("A4C", "PLAX"))
    assert select_videos(two, two, two, **kw)[2] == ("A4C", "PLAX")  # two classes suffice
    single = view_rows("train", 2, lambda k: ("PLAX", "PLAX"))
    with pytest.raises(UserError, match=r"labels 1 class\(es\) \(PLAX\)"):
        select_videos(single, single, single, **kw)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="label fraction"):
            fraction_studies(encode(two, "view", VIEWS), fraction=bad, seed=0)
    assert len(fraction_studies(encode(train, "view", VIEWS), fraction=0.01, seed=0)) == 1


def test_a_column_of_only_unlabeled_words_is_not_categorical():
    assert not is_categorical(pd.DataFrame({"view": ["unknown", "None", " nan ", None]}), "view")


# --- metrics ----------------------------------------------------------------------------------

def naive_bootstrap(y, proba, clusters, n_resamples, seed):
    """Study bootstrap of each class's one-vs-rest AUROC and their mean, with sklearn, one
    resample at a time (the draws of significance.resample_weights)."""
    units, index = np.unique(clusters, return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, len(units), (n_resamples, len(units)))
    per_class, macro = [], []
    for draw in draws:
        rows = np.concatenate([np.flatnonzero(index == u) for u in draw])
        ys, ps = y[rows], proba[rows]
        if len(np.unique(ys)) < len(np.unique(y)):  # a resample without a class: skipped
            continue
        values = [roc_auc_score(ys == k, ps[:, k]) for k in np.unique(y)]
        per_class.append(values)
        macro.append(np.mean(values))
    return np.array(per_class), np.array(macro)


def scores(n_videos: int, seed: int, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_videos)
    proba = rng.dirichlet(np.ones(3), n_videos)
    proba[np.arange(n_videos), y] += 0.4
    return y, proba / proba.sum(1, keepdims=True)


@pytest.mark.parametrize("n_videos, per_study, seed", [(48, 3, 0), (12, 2, 1)])
def test_class_metrics_are_sklearns_and_their_intervals_a_naive_study_bootstrap(
        n_videos, per_study, seed):
    y, proba = scores(n_videos, seed)
    clusters = np.array([f"S{k // per_study}" for k in range(n_videos)])
    m = evaluate_classes(y, proba, VIEWS, clusters=clusters, n_resamples=300, seed=5)
    assert m["macro_auroc"]["value"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion"] == confusion_matrix(y, proba.argmax(1)).tolist()
    assert m["accuracy"] == pytest.approx(np.mean(proba.argmax(1) == y))
    assert (m["classes"], m["n"], m["n_resamples"], m["seed"]) == (list(VIEWS), n_videos, 300, 5)
    per_class, macro = naive_bootstrap(y, proba, clusters, 300, 5)
    assert m["n_skipped"] == 300 - len(macro)
    for k, name in enumerate(VIEWS):
        got = m["per_class"][name]
        assert got["value"] == pytest.approx(roc_auc_score(y == k, proba[:, k]))
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(
            tuple(np.percentile(per_class[:, k], [2.5, 97.5])))
        assert got["n"] == len(np.unique(clusters[y == k]))
    assert (m["macro_auroc"]["ci_low"], m["macro_auroc"]["ci_high"]) == pytest.approx(
        tuple(np.percentile(macro, [2.5, 97.5])))
    if n_videos == 12:  # 6 studies: many resamples lack a class, and all is flagged
        assert m["n_skipped"] > 15 and not m["macro_auroc"]["ci_reliable"]
        assert any(f"{m['n_skipped']} of 300" in w for w in m["warnings"])


def test_class_metrics_flag_a_class_below_ten_studies_and_not_at_ten():
    y = np.repeat([0, 1, 2], [10, 10, 9])  # one video a study: units are videos
    _, proba = scores(len(y), 2)
    m = evaluate_classes(y, proba, VIEWS, n_resamples=200, seed=0)
    assert [m["per_class"][v]["n"] for v in VIEWS] == [10, 10, 9]
    assert [m["per_class"][v]["ci_reliable"] for v in VIEWS] == [True, True, False]
    assert m["warnings"] == ["class PLAX: only 9 videos (fewer than 10): its interval is "
                             "unreliable"]
    assert m["n_skipped"] == 0 and not m["macro_auroc"]["ci_reliable"]
    ten = evaluate_classes(np.repeat([0, 1, 2], 10), scores(30, 3)[1], VIEWS, n_resamples=200)
    assert ten["warnings"] == [] and ten["macro_auroc"]["ci_reliable"]
    assert np.isfinite([ten["macro_auroc"]["ci_low"], ten["macro_auroc"]["ci_high"]]).all()
    with pytest.raises(ValueError, match="does not match"):
        evaluate_classes(y, proba[:, :2], VIEWS)


def test_class_metrics_flag_few_studies_and_leave_out_absent_classes():
    y = np.array([1, 2, 1, 2, 1, 2])
    proba = np.eye(3)[[1, 2, 2, 2, 1, 1]] * 0.8 + 0.2 / 3
    m = evaluate_classes(y, proba, VIEWS, clusters=np.arange(6).astype(str), n_resamples=50)
    assert m["per_class"]["A2C"] == {"value": None, "ci_low": None, "ci_high": None, "n": 0,
                                     "ci_reliable": False}  # no A2C video: not in the macro
    assert m["macro_auroc"]["value"] == pytest.approx(np.mean(
        [roc_auc_score(y == 1, proba[:, 1]), roc_auc_score(y == 2, proba[:, 2])]))
    assert not m["macro_auroc"]["ci_reliable"] and any("A4C" in w for w in m["warnings"])
    assert m["confusion"] == [[0, 0, 0], [0, 2, 1], [0, 1, 2]]  # every class a row
    one = np.array([0, 1, 2, 1, 2, 1, 2])  # A2C on one video still has an AUROC
    p_one = np.vstack([[0.5, 0.3, 0.2], proba])
    got = evaluate_classes(one, p_one, VIEWS, n_resamples=20)["per_class"]["A2C"]["value"]
    assert got == pytest.approx(roc_auc_score(one == 0, p_one[:, 0]))


# --- the loss ---------------------------------------------------------------------------------

def test_the_multiclass_loss_is_weighted_smoothed_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    weight = balanced_class_weight(labels, 3)
    assert weight.tolist() == pytest.approx([4 / 3, 4 / 3, 2 / 3])  # n / (K n_k)
    assert balanced_class_weight(torch.tensor([0, 0, 1]), 3).tolist() == \
        pytest.approx([0.5, 1.0, 0.0])  # a class without samples (the last) weighs nothing
    s = 0.1
    targets = F.one_hot(labels, 3).float() * (1 - s) + s / 3
    per_row = -(targets * weight * torch.log_softmax(logits, 1)).sum(1)  # torch's definition
    want = per_row.sum() / weight[labels].sum()
    assert smoothed_ce(logits, labels, class_weight=weight, smoothing=s).item() == \
        pytest.approx(want.item(), rel=1e-6)


def test_steps_on_class_labels_drive_the_cross_entropy_down():
    torch.manual_seed(0)
    model = Classifier(build_encoder("r3d_tiny", width=4), dropout=0.0, n_outputs=3)
    cfg = FinetuneConfig(encoder="r3d_tiny", width=4, clip_len=4, lr=1e-2, precision="fp32",
                         augment=False, label_smoothing=0.0)
    g = torch.Generator().manual_seed(0)
    batch = {"clip": torch.randint(0, 256, (6, 4, 16, 16), generator=g, dtype=torch.uint8),
             "label": torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])}
    weight = balanced_class_weight(batch["label"], 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [train_step(model, optimizer, batch, cfg, device=torch.device("cpu"), pos_weight=1.0,
                         generator=g, class_weight=weight) for _ in range(25)]
    assert losses[0] == pytest.approx(np.log(3), abs=0.3) and losses[-1] < 0.5 * losses[0]


# --- the commands -----------------------------------------------------------------------------

def test_probe_fits_a_multinomial_head_and_evaluate_scores_it(cache, tmp_path):
    run = tmp_path / "probe"
    assert main(["probe", str(cache), "--task", "view", "--out", str(run), "--clips", "1",
                 *TINY]) == 0
    model, meta = load_classifier(run)
    assert meta["classes"] == list(VIEWS) and meta["view"] is None  # every view is classified
    assert model.head.weight.shape == (3, 32)
    # the head is the multinomial probe of the training videos' features, refitted here
    rows = encode(VideoCache(cache).rows("train"), "view", VIEWS)
    rows = rows[rows[CLASS_COLUMN] >= 0].reset_index(drop=True)
    h = clip_features(model.encoder, VideoCache(cache), rows, clip_len=4, period=2,
                      clips=1, precision="fp32").mean(1)  # as the probe ran (auto: bf16 on AMX)
    ref = fit_view_model(h, np.asarray(VIEWS)[rows[CLASS_COLUMN]], rows["study_id"].to_numpy())
    np.testing.assert_allclose(model.head.weight.detach().double().numpy(), ref.weight, rtol=1e-4,
                               atol=1e-5)
    assert json.loads((run / "log.jsonl").read_text().splitlines()[0])["c"] == ref.c

    assert main(["evaluate", str(run), "--clips", "1", "--n-resamples", "100",
                 "--precision", "fp32"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    videos = pd.read_csv(run / "predictions.csv")
    test = VideoCache(cache).rows("test")
    assert sorted(videos["path"]) == sorted(test["path"])  # every labeled test video, once
    truth = dict(zip(test["path"], test["view"].str.upper()))
    assert (videos["y_true"] == videos["path"].map(truth)).all()
    p = videos[[f"p_{v}" for v in VIEWS]].to_numpy()
    y = np.searchsorted(VIEWS, videos["y_true"])
    assert metrics["video"]["macro_auroc"]["value"] == pytest.approx(
        roc_auc_score(y, p, multi_class="ovr"))
    assert metrics["video"]["confusion"] == confusion_matrix(y, p.argmax(1), labels=[0, 1, 2]) \
        .tolist()
    test_rows = test.set_index("path").loc[videos["path"]].reset_index()
    h_test = clip_features(model.encoder, VideoCache(cache), test_rows, clip_len=4, period=2,
                           clips=1, precision="fp32").mean(1)
    np.testing.assert_allclose(p, softmax(h_test @ ref.weight.T + ref.bias, axis=1), atol=1e-4)
    assert (run / "confusion.png").is_file()


def test_finetune_trains_a_multiclass_classifier_end_to_end(cache, tmp_path):
    run = tmp_path / "ft"
    assert main(["finetune", str(cache), "--task", "view", "--out", str(run), "--epochs", "2",
                 "--batch-size", "8", "--val-clips", "1", "--eval-clips", "1", "--workers",
                 "0", "--no-progress", "--select-on", "val_auroc", *TINY]) == 0
    model, meta = load_classifier(run)
    assert meta["classes"] == list(VIEWS) and model.head.out_features == 3
    config = json.loads((run / "config.json").read_text())
    train = VideoCache(cache).rows("train")
    assert config["n_train_per_class"] == train["view"].str.upper().value_counts().to_dict()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(0 <= r["val_auroc"] <= 1 for r in log)
    assert meta["best_epoch"] == int(np.argmax([r["val_auroc"] for r in log]))
    assert main(["evaluate", str(run), "--clips", "1", "--n-resamples", "50"]) == 0
    assert set(json.loads((run / "metrics.json").read_text())["video"]["per_class"]) == set(VIEWS)


def test_a_class_without_training_videos_is_named_before_training(cache, tmp_path, capsys):
    local = copy_cache(cache, tmp_path)
    rows = VideoCache(local).rows()
    rows.loc[(rows["split"] == "train") & (rows["view"] == "A2C"), "view"] = ""
    rows.loc[(rows["split"] == "test") & (rows["view"] == "A2C"), "view"] = "a2c"  # any case
    write_manifest(local, rows)
    assert main(["probe", str(local), "--task", "view", "--out", str(tmp_path / "p"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "train split" in err and "A2C 0" in err and "'view'" in err
    assert not (tmp_path / "p").exists()


def test_commands_that_score_one_probability_refuse_a_multiclass_model(cache, tmp_path, capsys):
    run = tmp_path / "probe"
    assert main(["probe", str(cache), "--task", "view", "--out", str(run), "--clips", "1",
                 *TINY]) == 0
    capsys.readouterr()
    for argv in (["predict", str(run), str(cache / "manifest.csv"), "--out",
                  str(tmp_path / "p.csv")],
                 ["saliency", str(run), str(next((cache / "videos").glob("*.npy"))), "--out",
                  str(tmp_path / "s")]):
        assert main(argv) == 2, argv[0]
        err = capsys.readouterr().err.strip()
        assert "multi-class model" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert main(["evaluate", str(run), "--clips", "1", "--n-resamples", "20", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["compare", str(run), str(run)]) == 2
    assert "multi-class evaluation" in capsys.readouterr().err


def test_lpft_starts_from_a_multiclass_probes_head_and_refuses_a_binary_one(cache, tmp_path,
                                                                           capsys):
    from test_probe import pretrained_encoder

    encoder = str(pretrained_encoder(tmp_path / "enc" / "encoder.pt", cache))
    common = ["--init", encoder, "--clip-len", "4", "--device", "cpu", "--precision", "fp32"]
    assert main(["probe", str(cache), "--task", "view", "--out", str(tmp_path / "probe"),
                 "--clips", "1", "--period", "1", *common]) == 0
    assert main(["finetune", str(cache), "--task", "view", "--out", str(tmp_path / "lpft"),
                 "--head-init", str(tmp_path / "probe"), "--epochs", "1", "--lr", "0",
                 "--batch-size", "8", "--val-clips", "1", "--workers", "0", "--no-progress",
                 *common]) == 0  # lr 0: the model is its starting point
    tuned, meta = load_classifier(tmp_path / "lpft")
    fitted, _ = load_classifier(tmp_path / "probe")
    assert meta["readout"] == "lpft" and tuned.head.weight.shape == (3, 32)
    torch.testing.assert_close(tuned.head.weight, fitted.head.weight)
    torch.testing.assert_close(tuned.head.bias, fitted.head.bias)
    assert main(["probe", str(cache), "--task", "lvh", "--out", str(tmp_path / "binary"),
                 "--clips", "1", "--period", "1", *common]) == 0
    capsys.readouterr()
    assert main(["finetune", str(cache), "--task", "view", "--out", str(tmp_path / "x"),
                 "--head-init", str(tmp_path / "binary"), "--epochs", "1", "--workers", "0",
                 "--no-progress", *common]) == 2
    assert "that probe has 1 logit(s), this run's task has 3" in capsys.readouterr().err


def test_a_killed_multiclass_finetune_resumes_to_the_uninterrupted_model(cache, tmp_path,
                                                                           monkeypatch):
    import dataclasses

    import echoclr.commands.finetune as ft

    cfg = FinetuneConfig(cache=str(cache), out=str(tmp_path / "run"), task="view",
                         encoder="r3d_tiny", width=4, clip_len=4, period=2, batch_size=8,
                         epochs=3, patience=5, workers=0, progress=False, val_clips=1,
                         precision="fp32", device="cpu")
    crash_after_epoch(cfg, monkeypatch, 0)
    resumed = ft.finetune(dataclasses.replace(cfg, resume=True))
    reference = ft.finetune(dataclasses.replace(cfg, out=str(tmp_path / "ref")))
    a = torch.load(resumed / "model.pt", weights_only=True)
    b = torch.load(reference / "model.pt", weights_only=True)
    assert a["head.weight"].shape == (3, 32) and a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key


def test_the_experiment_refuses_a_categorical_task_before_pretraining(cache, tmp_path):
    from echoclr.commands.experiment import ExperimentSpec, run_spec

    with pytest.raises(UserError, match=r"tasks: 'view' is a categorical \(multi-class\)"):
        run_spec(ExperimentSpec(cache=str(cache), tasks=("lvh", "view")), tmp_path / "exp")
    assert not (tmp_path / "exp" / "pretrain").exists()


def test_a_misspelt_categorical_task_is_suggested(cache, tmp_path, capsys):
    assert main(["probe", str(cache), "--task", "views", "--out", str(tmp_path / "p"),
                 *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "(label columns: lvh, severe_as, view); did you mean --task view?" in err


@pytest.mark.parametrize("task", ["view", "lvh"])
def test_evaluate_of_a_split_the_cache_lacks_names_its_splits(cache, tmp_path, capsys, task):
    run = tmp_path / "probe"
    assert main(["probe", str(cache), "--task", task, "--out", str(run), "--clips", "1",
                 *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "ext_test", "--clips", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--split ext_test:" in err and "has no such split (splits: test, train, val)" in err
