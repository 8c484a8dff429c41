"""Task recipe keys without training: validation (one ConfigError naming the key), the weighted / smoothed cls
loss, the metric each stage selects checkpoints by, and the seed-summary arithmetic."""

from __future__ import annotations

import math

import pytest

from tuneforge.config import load_config
from tuneforge.data.task_data import ClsExample, LabelMap
from tuneforge.errors import ConfigError
from tuneforge.runs import open_run
from tuneforge.train.cls_common import ClsData, class_weights, loss_fn
from tuneforge.train.common import training_args
from tuneforge.train.seeds import check_seeds, expand_seeds, seed_config, summarize
from tuneforge.train.stages import get_stage, load_training_config


@pytest.mark.parametrize("overrides,key", [
    (["stage=qa", "train.label_smoothing=0.1"], "train.label_smoothing"),
    (["stage=seq2seq", "task.class_weights=balanced"], "task.class_weights"),
    (["stage=sft", "train.early_stopping_patience=2", "data.eval_split=0.1"], "train.early_stopping_patience"),
    (["stage=cls", "train.early_stopping_patience=2"], "train.early_stopping_patience needs eval data"),
    (["stage=cls", "method=features", "train.label_smoothing=0.1"], "train.label_smoothing"),
    (["stage=cls", "train.early_stopping_patience=2", "data.eval_split=0.2", "train.eval_steps=5",
      "train.save_steps=7"], "train.save_steps"),
    (["stage=cls", "train.early_stopping_patience=2", "data.eval_split=0.2", "train.save_steps=7"],
     "needs train.eval_steps"),
    (["task.class_weights=[1, 0]"], "task.class_weights"),
    (["train.label_smoothing=1.5"], "train.label_smoothing"),
])
def test_bad_recipe_keys_fail_in_one_line_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_training_config(None, overrides)
    assert key in str(e.value) and "\n" not in str(e.value)


def _data(labels: list[str], multi: bool = False) -> ClsData:
    names = sorted({x for lab in labels for x in (lab if multi else [lab])})
    exs = [ClsExample(text="t", text_pair=None, label=lab, file="f", line=i) for i, lab in enumerate(labels)]
    return ClsData(exs, [], LabelMap(names=names, multi_label=multi))


def test_class_weights_balanced_list_and_count_mismatch():
    data = _data(["a"] * 6 + ["b"] * 2)
    cfg = load_config(None, ["stage=cls", "task.class_weights=balanced"])
    assert class_weights(cfg, data) == pytest.approx([8 / (2 * 6), 8 / (2 * 2)], abs=1e-6)
    assert class_weights(load_config(None, ["stage=cls"]), data) is None
    assert class_weights(load_config(None, ["stage=cls", "task.class_weights=[1, 3]"]), data) == [1.0, 3.0]
    with pytest.raises(ConfigError, match=r"task.class_weights has 3 values but there are 2 labels \(a, b\)"):
        class_weights(load_config(None, ["stage=cls", "task.class_weights=[1, 2, 3]"]), data)
    multi = _data([["a"], ["a", "b"], ["a"], ["a"]], multi=True)  # b on in 1 of 4: pos_weight 3; a always on: 1
    assert class_weights(load_config(None, ["stage=cls", "task.class_weights=balanced"]), multi) == [1.0, 3.0]


def test_weighted_and_smoothed_loss_match_the_formulas():
    import torch

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    labels = torch.tensor([0, 1, 1])
    out = {"logits": logits}
    logp = logits.log_softmax(-1)
    nll = -logp[torch.arange(3), labels]
    assert torch.isclose(loss_fn(None, 0.0, False)(out, labels), nll.mean())
    w = torch.tensor([1.0, 4.0])
    weighted = loss_fn([1.0, 4.0], 0.0, False)(out, labels)
    assert torch.isclose(weighted, (w[labels] * nll).mean())
    assert not torch.isclose(weighted, nll.mean())  # weighting changes the loss
    smooth = loss_fn(None, 0.2, False)(out, labels)
    expected = (0.8 * nll + 0.2 * -logp.mean(-1)).mean()  # target 1 - e on the label, e / K everywhere
    assert torch.isclose(smooth, expected)
    # gradient accumulation: the sum over the micro-batch divided by the items of the whole accumulated batch
    assert torch.isclose(loss_fn(None, 0.0, False)(out, labels, num_items_in_batch=6), nll.sum() / 6)
    # multi-label: BCE with pos_weight per label
    multi = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, multi, pos_weight=w)
    assert torch.isclose(loss_fn([1.0, 4.0], 0.0, True)(out, multi), bce)


@pytest.mark.parametrize("overrides,metric,greater", [
    (["stage=cls"], "accuracy", True),
    (["stage=cls", "task.metric=f1_macro"], "f1_macro", True),
    (["stage=qa"], "f1", True),
    (["stage=seq2seq"], "bleu", True),
    (["stage=seq2seq", "task.metric=ter"], "ter", False),
])
def test_early_stopping_watches_the_stage_metric(tmp_path, overrides, metric, greater):
    cfg = load_config(None, [*overrides, "train.early_stopping_patience=3", "data.eval_split=0.1",
                             "train.label_smoothing=0.1" if "stage=seq2seq" in overrides else "train.seed=1",
                             f"output.dir={tmp_path}", "output.name=r"])
    stage = get_stage(cfg)
    assert stage.selection(cfg) == (metric, greater)
    run = open_run(cfg, resume=False)
    try:
        args = training_args(cfg, run, has_eval=True, select=stage.selection(cfg))
        assert args.load_best_model_at_end and args.metric_for_best_model == metric
        assert args.greater_is_better is greater
        assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
        off = training_args(cfg, run, has_eval=False, select=stage.selection(cfg))  # nothing to watch
        assert not off.load_best_model_at_end
    finally:
        run.release()


def test_seed_configs_and_summary(tmp_path):
    cfg = load_config(None, ["stage=cls", "method=lora", "train.seed=7", "output.name=x"])
    expanded = expand_seeds(cfg, 3)
    assert expanded.train.seeds == [7, 8, 9]
    sub = seed_config(expanded, tmp_path, 8)
    assert (sub.train.seed, sub.train.seeds, sub.output.dir, sub.output.name) == (8, [], str(tmp_path), "seed-8")
    assert get_stage(sub).default_lr(sub) == 2e-3  # train.lr still unset: the per-method default applies
    with pytest.raises(ConfigError, match="repeated"):
        check_seeds([1, 2, 1])
    with pytest.raises(ConfigError, match="both --seeds and train.seeds"):
        expand_seeds(expanded, 2)
    s = summarize([{"seed": 1, "eval_accuracy": 0.8, "eval_note": "x"}, {"seed": 2, "eval_accuracy": 0.9},
                   {"seed": 3, "eval_accuracy": 1.0}])
    assert s["n"] == 3 and list(s["mean"]) == ["eval_accuracy"]
    assert math.isclose(s["mean"]["eval_accuracy"], 0.9) and math.isclose(s["std"]["eval_accuracy"], 0.1)


@pytest.mark.parametrize("head", ["linear", "logreg"])
def test_feature_heads_take_class_weights(head):
    """method=features: the same weights reach the head's loss (torch) or class_weight (scikit-learn)."""
    import numpy as np

    from tuneforge.config.task import TaskConfig
    from tuneforge.train.features import train_head

    rng = np.random.default_rng(0)  # two overlapping blobs, 9:1
    x = np.concatenate([rng.normal(0, 1, (270, 4)), rng.normal(1.0, 1, (30, 4))]).astype(np.float32)
    y = np.array([0] * 270 + [1] * 30)
    task = TaskConfig(head=head, head_epochs=200, head_lr=0.05)

    def minority_recall(weights):
        import torch

        model = train_head(x, y, task, False, 2, 0, weights=weights)
        with torch.no_grad():
            pred = model(torch.from_numpy(x)).argmax(-1).numpy()
        return (pred[y == 1] == 1).mean()

    plain, weighted = minority_recall(None), minority_recall([300 / 540, 300 / 60])
    assert weighted > plain + 0.3, (plain, weighted)
