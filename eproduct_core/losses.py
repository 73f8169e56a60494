"""Training losses: DHC layer and dependence losses, normalized softmax, NT-Xent.

Deep Hierarchical Classification (Goyal & Ghosh 2020) as the seed report describes it:
  layer loss       sum_l alpha_l * CE(logits_l, y_l)
  dependence loss  for l >= 2: beta_l * dloss_l, with the report's eq. (2)
                   dloss_l = -(ploss)^(D_l * I_{l-1}) * (ploss)^(D_l * I_l)
  where D_l = 1 when the predicted level-l class is NOT a child of the predicted level-(l-1) class,
  I_l = 1 when level l is predicted wrongly, and ploss is a constant.

How we read eq. (2) (`dependence_faithful`): taken literally, -(p^a)(p^b) equals -1 whenever the
predictions are consistent (D_l = 0), so a constant offset is implied; we add +1 so the term is 0 when
predictions are consistent: dloss_l = 1 - ploss^(D_l*I_{l-1}) * ploss^(D_l*I_l). It is built from
argmax indicators only, so it has NO gradient: it changes the reported loss, never the weights. (The
authors' reference code computes ploss^(..)*ploss^(..) - 1, the same term with the opposite sign; with
their ploss = 3 the sign of eq. (2) even makes an inconsistent prediction *lower* the reported loss.
Either way training is unaffected, which is part of why the seed's hierarchy constraint does nothing.)

`dependence_soft` is the differentiable variant offered beside it: the expected probability mass that
level l assigns to classes outside the children of level (l-1)'s predicted class.

Normalized softmax (Zhai & Wu 2018): cosine logits against L2-normalised class proxies divided by a
temperature (0.05). NT-Xent (SimCLR): two augmented views of one image must find each other in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def layer_loss(logits: Sequence[torch.Tensor], labels: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """sum_l alpha_l * mean cross-entropy of level l; `labels` is (B, L) int64."""
    total = logits[0].new_zeros(())
    for level, (level_logits, alpha) in enumerate(zip(logits, alphas, strict=False)):
        if alpha:
            total = total + alpha * F.cross_entropy(level_logits.float(), labels[:, level])
    return total


def dependence_indicators(
    predicted: Sequence[torch.Tensor], labels: torch.Tensor, parents: Sequence[torch.Tensor], level: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(D_l, I_{l-1}, I_l) as float tensors (B,) for `level` >= 1 from predicted class ids."""
    child, parent = predicted[level], predicted[level - 1]
    d = (parents[level][child] != parent).float()
    i_prev = (parent != labels[:, level - 1]).float()
    i_cur = (child != labels[:, level]).float()
    return d, i_prev, i_cur


def dloss_eq2(d: torch.Tensor, i_prev: torch.Tensor, i_cur: torch.Tensor, ploss: float) -> torch.Tensor:
    """The report's eq. (2) plus the +1 offset, per sample: 1 - ploss^(D*I_{l-1}) * ploss^(D*I_l)."""
    p = torch.as_tensor(float(ploss), dtype=torch.float32, device=d.device)
    return 1.0 - torch.pow(p, d * i_prev) * torch.pow(p, d * i_cur)


def dependence_faithful(
    logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    parents: Sequence[torch.Tensor],
    betas: Sequence[float],
    ploss: float,
) -> torch.Tensor:
    """sum_{l>=2} beta_l * mean_batch dloss_l, dloss_l from eq. (2) as read in the module docstring.

    `parents[l]` maps each level-l class to its level-(l-1) parent (parents[0] unused).
    The result carries no gradient (argmax); it is 0 when every prediction is consistent.
    """
    with torch.no_grad():
        predicted = [level_logits.argmax(dim=1) for level_logits in logits]
        total = logits[0].new_zeros((), dtype=torch.float32)
        for level in range(1, len(logits)):
            d, i_prev, i_cur = dependence_indicators(predicted, labels, parents, level)
            total = total + betas[level - 1] * dloss_eq2(d, i_prev, i_cur, ploss).mean()
    return total


def dependence_soft(
    logits: Sequence[torch.Tensor], parents: Sequence[torch.Tensor], betas: Sequence[float]
) -> torch.Tensor:
    """Differentiable dependence loss: sum_{l>=2} beta_l * E_batch[ P_l(classes outside children of argmax_{l-1}) ].

    The parent's argmax is a constant; the gradient flows through level l's softmax, pushing its mass
    onto the children of the predicted parent.
    """
    total = logits[0].new_zeros((), dtype=torch.float32)
    for level in range(1, len(logits)):
        probs = logits[level].float().softmax(dim=1)
        parent_pred = logits[level - 1].detach().argmax(dim=1)
        inside = parents[level].unsqueeze(0) == parent_pred.unsqueeze(1)  # (B, n_l)
        outside_mass = (probs * (~inside).float()).sum(dim=1)
        total = total + betas[level - 1] * outside_mass.mean()
    return total


def normalized_softmax(cosine: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Zhai & Wu (2018): cross-entropy over cosine(embedding, proxy_c) / temperature.

    `cosine` (B, C): each embedding's cosine similarity to every class proxy (the metric head's
    `outputs["cosine"]`); `labels` (B,) proxy ids.
    """
    return F.cross_entropy(cosine.float() / temperature, labels)


def nt_xent(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2B views must pick its partner among the other 2B-1."""
    z = F.normalize(torch.cat([view_a, view_b]).float(), dim=1)
    n = view_a.shape[0]
    similarity = z @ z.t() / temperature
    similarity.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, targets)
