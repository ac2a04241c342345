"""Loss values checked against numbers computed by hand (math module, not torch)."""

import math

import pytest
import torch

from rewardlab import losses
from rewardlab.losses import LossConfig


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


C = torch.tensor([2.0, 0.5, -1.0])
R = torch.tensor([1.0, 1.5, -3.0])
D = [1.0, -1.0, 2.0]


def mean(xs):
    return sum(xs) / len(xs)


def test_bt_matches_hand_computed():
    expected = mean([-logsig(d) for d in D])
    assert losses.bt_loss(C, R).item() == pytest.approx(expected, rel=1e-6)


def test_bt_of_equal_rewards_is_log2():
    x = torch.zeros(4)
    assert losses.bt_loss(x, x).item() == pytest.approx(math.log(2), rel=1e-6)


def test_margin_subtracts_margin():
    m = torch.tensor([0.5, 0.0, 3.0])
    expected = mean([-logsig(d - mm) for d, mm in zip(D, [0.5, 0.0, 3.0])])
    assert losses.margin_loss(C, R, m).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing():
    eps = 0.1
    expected = mean([-(1 - eps) * logsig(d) - eps * logsig(-d) for d in D])
    assert losses.label_smoothing_loss(C, R, eps).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_zero_is_bt():
    assert losses.label_smoothing_loss(C, R, 0.0).item() == pytest.approx(losses.bt_loss(C, R).item())


def test_centering_penalty():
    expected = 0.01 * mean([(2 + 1) ** 2, (0.5 + 1.5) ** 2, (-1 - 3) ** 2])
    assert losses.centering_penalty(C, R, 0.01).item() == pytest.approx(expected, rel=1e-6)


LPC = torch.tensor([-12.0, -30.0])
LPR = torch.tensor([-15.0, -20.0])
REF_C = torch.tensor([-13.0, -28.0])
REF_R = torch.tensor([-14.0, -21.0])


def test_sft_is_logsigmoid_of_scaled_logp():
    expected = mean([-logsig(0.1 * -12.0), -logsig(0.1 * -30.0)])
    assert losses.sft_regularizer(LPC, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_sft_nll_is_plain_summed_nll():
    assert losses.sft_nll_regularizer(LPC).item() == pytest.approx(21.0)


def test_dpo_with_reference():
    logits = [(-12 + 15) - (-13 + 14), (-30 + 20) - (-28 + 21)]
    expected = mean([-logsig(0.1 * z) for z in logits])
    got = losses.dpo_regularizer(LPC, LPR, REF_C, REF_R, 0.1).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_dpo_noref():
    expected = mean([-logsig(0.1 * 3.0), -logsig(0.1 * -10.0)])
    assert losses.dpo_noref_regularizer(LPC, LPR, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_total_is_convex_combination():
    cfg = LossConfig(loss="bt", reg="sft", alpha=0.25, beta=0.1)
    out = losses.grm_loss(cfg, C[:2], R[:2], chosen_logps=LPC)
    bt = mean([-logsig(1.0), -logsig(-1.0)])
    sft = mean([-logsig(-1.2), -logsig(-3.0)])
    assert out.total.item() == pytest.approx(0.75 * bt + 0.25 * sft, rel=1e-6)
    assert out.reward == pytest.approx(bt, rel=1e-6)
    assert out.regularizer == pytest.approx(sft, rel=1e-6)
    assert out.accuracy == pytest.approx(0.5)


def test_reg_none_uses_reward_loss_alone_even_with_alpha():
    cfg = LossConfig(loss="bt", reg="none", alpha=0.5)
    out = losses.grm_loss(cfg, C, R)
    assert out.total.item() == pytest.approx(losses.bt_loss(C, R).item())


def test_defaults_are_the_papers():
    cfg = LossConfig()
    assert (cfg.loss, cfg.reg, cfg.alpha, cfg.beta) == ("bt", "sft", 0.01, 0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "hinge"}, "unknown reward loss"),
        ({"reg": "kl"}, "unknown regularizer"),
        ({"alpha": 1.5}, "alpha must be in"),
    ],
)
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**kwargs)


def test_margin_loss_without_margins_is_a_clear_error():
    with pytest.raises(ValueError, match="margin"):
        losses.grm_loss(LossConfig(loss="margin", reg="none"), C, R)


def test_dpo_without_reference_logps_is_a_clear_error():
    with pytest.raises(ValueError, match="reference"):
        losses.grm_loss(LossConfig(reg="dpo"), C[:2], R[:2], chosen_logps=LPC, rejected_logps=LPR)


def test_gradients_flow_through_both_parts():
    c = C.clone().requires_grad_()
    lp = LPC.clone().requires_grad_()
    out = losses.grm_loss(LossConfig(alpha=0.5), c[:2], R[:2], chosen_logps=lp)
    out.total.backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    assert lp.grad is not None and (lp.grad < 0).all()  # raising log-prob lowers the loss
