"""DHC layer/dependence losses (eq. 2 as read in losses.py), the differentiable variant, normalized softmax, NT-Xent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eproduct_core import losses

# meta: 2 classes; level2: 4 classes (0,1 under meta 0; 2,3 under meta 1); leaf: 4 classes, leaf c under level2 c
PARENTS = [torch.zeros(0, dtype=torch.long), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 3])]


def one_hot_logits(predicted: list[int], sizes=(2, 4, 4)) -> list[torch.Tensor]:
    """Logits (1, n) per level whose argmax is `predicted[level]`."""
    return [F.one_hot(torch.tensor([p]), n).float() * 5.0 for p, n in zip(predicted, sizes, strict=False)]


def eq2_plus_one(d: int, i_prev: int, i_cur: int, ploss: float) -> float:
    """The report's eq. (2), -(p^(D*I_{l-1})) * (p^(D*I_l)), with the +1 offset that makes it 0 when consistent."""
    return -(ploss ** (d * i_prev)) * (ploss ** (d * i_cur)) + 1.0


@pytest.mark.parametrize("ploss", [3.0, 0.5])
@pytest.mark.parametrize(
    "predicted, truth",
    [
        ([0, 1, 1], [0, 1, 1]),  # all right, consistent
        ([1, 2, 2], [0, 1, 1]),  # all wrong but consistent: D = 0 everywhere
        ([0, 2, 2], [0, 2, 2]),  # level2 not a child of meta (D2 = 1), every level right
        ([0, 2, 3], [0, 1, 1]),  # D2 = 1 (meta right, level2 wrong); D3 = 1 (level2 wrong, leaf wrong)
        ([1, 0, 0], [1, 2, 2]),  # D2 = 1, meta right, level2 wrong; leaf consistent with level2
    ],
)
def test_faithful_dependence_matches_eq2_on_hand_built_cases(predicted, truth, ploss):
    logits = one_hot_logits(predicted)
    labels = torch.tensor([truth])
    betas = (0.8, 0.6)
    expected = 0.0
    for level in (1, 2):
        d = int(PARENTS[level][predicted[level]] != predicted[level - 1])
        i_prev, i_cur = int(predicted[level - 1] != truth[level - 1]), int(predicted[level] != truth[level])
        expected += betas[level - 1] * eq2_plus_one(d, i_prev, i_cur, ploss)
    got = losses.dependence_faithful(logits, labels, PARENTS, betas, ploss)
    assert got.item() == pytest.approx(expected)


def test_faithful_dependence_is_zero_when_predictions_are_consistent():
    torch.manual_seed(0)
    leaf = torch.randint(0, 4, (32,))
    predicted = [PARENTS[1][PARENTS[2][leaf]], PARENTS[2][leaf], leaf]
    logits = [F.one_hot(p, n).float() for p, n in zip(predicted, (2, 4, 4), strict=False)]
    labels = torch.randint(0, 2, (32, 3))  # right or wrong does not matter when D = 0
    assert losses.dependence_faithful(logits, labels, PARENTS, (1.0, 1.0), 3.0).item() == 0.0


def test_faithful_dependence_has_no_gradient_and_a_known_value_when_inconsistent():
    logits = [t.requires_grad_() for t in one_hot_logits([0, 2, 3])]
    value = losses.dependence_faithful(logits, torch.tensor([[0, 1, 1]]), PARENTS, (1.0, 1.0), 3.0)
    assert not value.requires_grad
    # level2: D=1, I1=0, I2=1 -> 1 - 3 = -2; leaf: D=1, I2=1, I3=1 -> 1 - 9 = -8
    assert value.item() == pytest.approx(-10.0)


def test_soft_dependence_has_gradient_and_measures_mass_outside_the_parents_children():
    logits = [torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.0, 0.0]])]
    for t in logits:
        t.requires_grad_()
    value = losses.dependence_soft(logits, PARENTS, (1.0, 1.0))
    p2 = torch.softmax(logits[1].detach(), 1)[0]
    # meta predicts 0 -> level2 mass outside {0, 1}; level2 predicts 2 (first max) -> leaf mass outside {2}
    expected = float(p2[2] + p2[3]) + 0.75
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert logits[1].grad.abs().sum() > 0 and logits[2].grad.abs().sum() > 0
    assert logits[0].grad is None or logits[0].grad.abs().sum() == 0  # the parent's argmax is a constant


def test_soft_dependence_is_near_zero_when_all_mass_is_inside():
    logits = one_hot_logits([1, 2, 2])
    logits = [t * 10 for t in logits]
    assert losses.dependence_soft(logits, PARENTS, (1.0, 1.0)).item() < 1e-6


def test_layer_loss_is_alpha_weighted_cross_entropy():
    torch.manual_seed(1)
    logits = [torch.randn(5, 2), torch.randn(5, 4), torch.randn(5, 4)]
    labels = torch.stack([torch.randint(0, 2, (5,)), torch.randint(0, 4, (5,)), torch.randint(0, 4, (5,))], 1)
    expected = sum(
        a * F.cross_entropy(logit, labels[:, i])
        for i, (logit, a) in enumerate(zip(logits, (1.0, 0.5, 2.0), strict=False))
    )
    assert losses.layer_loss(logits, labels, (1.0, 0.5, 2.0)).item() == pytest.approx(expected.item())


def test_normalized_softmax_is_cross_entropy_of_scaled_cosines():
    torch.manual_seed(2)
    emb, proxies, labels = torch.randn(6, 8) * 3, torch.randn(4, 8), torch.randint(0, 4, (6,))
    cos = F.normalize(emb, dim=1) @ F.normalize(proxies, dim=1).t()
    expected = F.cross_entropy(cos / 0.05, labels)
    assert losses.normalized_softmax(cos, labels, 0.05).item() == pytest.approx(expected.item(), rel=1e-5)
    aligned_cos = F.normalize(proxies[labels], dim=1) @ F.normalize(proxies, dim=1).t()
    assert losses.normalized_softmax(aligned_cos, labels, 0.05).item() < expected.item()


def test_training_uses_normalized_softmax_for_the_metric_head():
    from eproduct_core.config import TrainConfig
    from eproduct_core.train import compute_loss

    torch.manual_seed(4)
    cosine, labels = torch.rand(5, 3) * 2 - 1, torch.randint(0, 3, (5,))
    config = TrainConfig(backbone="tiny", metric=True, metric_weight=0.5, temperature=0.1)  # no DHC logits given
    parts = compute_loss({"cosine": cosine}, labels.view(-1, 1), labels, [], config, 1)
    expected = 0.5 * losses.normalized_softmax(cosine, labels, 0.1)
    assert parts["metric"].item() == pytest.approx(expected.item())


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(3)
    a = torch.randn(16, 32)
    matched = losses.nt_xent(a, a + 0.01 * torch.randn(16, 32), 0.1)
    shuffled = losses.nt_xent(a, torch.randn(16, 32), 0.1)
    assert matched.item() < 0.1 < shuffled.item()
    b = torch.randn(16, 32, requires_grad=True)
    losses.nt_xent(a, b).backward()
    assert b.grad.abs().sum() > 0
