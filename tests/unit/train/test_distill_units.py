"""Distillation pieces without training: the KD loss math, depth pruning, and the config / teacher checks that must
fail in milliseconds with one line."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.models.depth import evenly_spaced, keep_layers
from tuneforge.train.distill import check_labels, open_teacher
from tuneforge.train.distill_kd import (
    KDSettings,
    classification_loss,
    kd_divergence,
    token_loss_sums,
)
from tuneforge.train.stages import get_stage


def test_kd_divergence_is_zero_only_at_the_teacher_and_scaled_by_t_squared():
    torch.manual_seed(0)
    t, s = torch.randn(4, 5), torch.randn(4, 5)
    assert float(kd_divergence(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_divergence(s, t, 2.0)) > 0
    # reference: T^2 * mean over rows of sum_c p_t (log p_t - log p_s) at temperature T
    p_t, log_p_s = torch.softmax(t / 3, -1), torch.log_softmax(s / 3, -1)
    ref = 9 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert float(kd_divergence(s, t, 3.0)) == pytest.approx(float(ref), rel=1e-5)
    # the gradient pulls the student towards the teacher
    s.requires_grad_(True)
    kd_divergence(s, t, 1.0).backward()
    assert float(kd_divergence(s.detach() - 0.5 * s.grad, t, 1.0)) < float(kd_divergence(s.detach(), t, 1.0))


def test_classification_loss_mixes_kd_and_hard_labels_by_alpha():
    torch.manual_seed(1)
    s, t, y = torch.randn(6, 3), torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    hard = torch.nn.functional.cross_entropy(s, y)
    assert float(classification_loss(s, t, y, KDSettings(2.0, 0.0, False))[0]) == pytest.approx(float(hard))
    assert float(classification_loss(s, None, y, KDSettings(2.0, 0.7, False))[0]) == pytest.approx(float(hard))
    mixed, soft = classification_loss(s, t, y, KDSettings(2.0, 0.7, False))
    assert float(mixed) == pytest.approx(float(0.7 * soft + 0.3 * hard), rel=1e-6)
    ml, _ = classification_loss(s, t, (y[:, None] == torch.arange(3)).float(), KDSettings(2.0, 0.5, False, True))
    assert torch.isfinite(ml)


def test_token_loss_counts_only_target_positions_and_cuts_the_vocab():
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 7), torch.randn(2, 4, 9)
    labels = torch.tensor([[-100, -100, 3, 4], [-100, 1, 2, -100]])
    hard, soft, n = token_loss_sums(s, t, labels, KDSettings(1.0, 0.5, True, vocab=7))
    assert int(n) == 4  # next-token targets: (0,1)->3, (0,2)->4, (1,0)->1, (1,1)->2
    keep = torch.tensor([[False, True, True, False], [True, True, False, False]])
    ref = torch.nn.functional.cross_entropy(s[keep], torch.tensor([3, 4, 1, 2]), reduction="sum")
    assert float(hard) == pytest.approx(float(ref), rel=1e-6)
    assert float(soft) == pytest.approx(float(kd_divergence(s[keep], t[keep][:, :7], 1.0, reduction="sum")), rel=1e-6)


def test_keep_layers_counts_and_lists(tiny_llama):
    from transformers import AutoModelForCausalLM

    assert evenly_spaced(6, 3) == [0, 2, 5] and evenly_spaced(6, 1) == [0] and evenly_spaced(12, 4) == [0, 4, 7, 11]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert keep_layers(model, [1]) == [1] and model.config.num_hidden_layers == 1 and len(model.model.layers) == 1
    assert model.model.layers[0].self_attn.layer_idx == 0
    with pytest.raises(ConfigError, match="keep between 1 and 0"):
        keep_layers(model, 1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    for bad in ([1, 0], [0, 0], [5]):
        with pytest.raises(ConfigError, match="distinct increasing block indices in 0..1"):
            keep_layers(model, bad)


def test_config_checks_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="distill.teacher is not set"):
        get_stage(load_config(overrides=["stage=distill", "method=full"]))
    with pytest.raises(ConfigError, match="method: lora needs a student saved on disk"):
        get_stage(load_config(overrides=["stage=distill", "distill.teacher=x", "distill.student_layers=2"]))
    for key in ("task.pooling=mean", "task.head_init=probe"):  # a student never reads them: refused, not ignored
        with pytest.raises(ConfigError, match="do not apply to stage distill"):
            get_stage(load_config(overrides=["stage=distill", "method=full", "distill.teacher=x", key]))
    with pytest.raises(ConfigError, match="method: features does not apply"):
        get_stage(load_config(overrides=["stage=distill", "method=features", "distill.teacher=x"]))
    with pytest.raises(Exception, match="student_layers"):
        load_config(overrides=["stage=distill", "distill.student_layers=0"])
    with pytest.raises(ModelLoadError, match="distill.teacher: not found"):
        open_teacher(str(tmp_path / "missing"))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.yaml").write_text("stage: cls\n")
    with pytest.raises(ConfigError, match="neither adapter/ nor model/"):
        open_teacher(str(tmp_path / "unfinished"))


def test_teacher_labels_must_match_the_data():
    from types import SimpleNamespace

    from tuneforge.data.task_data import LabelMap

    def teacher(*names):
        return SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(names)), num_labels=len(names)))

    data = LabelMap(["negative", "positive"])
    check_labels(teacher("negative", "positive"), data)
    check_labels(teacher("LABEL_0", "LABEL_1"), data)  # an unnamed head: ids are the data's ids
    with pytest.raises(ConfigError, match=r"predicts labels \['positive', 'negative'\]"):
        check_labels(teacher("positive", "negative"), data)
    with pytest.raises(ConfigError, match="predicts labels"):
        check_labels(teacher("LABEL_0", "LABEL_1", "LABEL_2"), data)
