"""PNAG's budget-conditioned architecture generator and its REINFORCE training.

``ArchGenerator`` is an LSTM that emits a space's gene vector decision by decision, one softmax
head per gene with that gene's own cardinality, so it is generic over spaces (for ``ofav2``:
resolution, exit, depths, then kernel / expand / branch mask per block; for ``natsbench`` the six
edges). It is conditioned on a continuous normalised budget vector (one value per budget metric):
the budget embedding sets the initial hidden state and is fed at every step.

``ReinforceTrainer`` trains it with REINFORCE on the reward R(arch, budget) of the Pareto-aware
evaluator, with budgets drawn uniformly over ``[0, 1]`` per metric, a variance-reducing baseline
(an exponential moving average of the reward per budget bin) and an entropy bonus. Optionally a
behaviour-cloning term (the negative log-likelihood of a target architecture per drawn budget,
e.g. the best measured one that meets it) is added to the same loss. All sampling goes through
one seeded ``torch.Generator``, so training is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.generate.ranker import seeded_init


class ArchGenerator(nn.Module):
    """LSTM policy over gene vectors, conditioned on a normalised budget vector."""

    def __init__(self, cardinalities: Sequence[int], budget_dim: int, hidden: int = 64):
        super().__init__()
        self.cardinalities = [int(c) for c in cardinalities]
        self.hidden = hidden
        self.frequencies = 4
        self.budget_embed = nn.Sequential(
            nn.Linear(budget_dim * (1 + 2 * self.frequencies), hidden), nn.Tanh(), nn.Linear(hidden, hidden)
        )
        self.init_state = nn.Linear(hidden, 2 * hidden)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.tokens = nn.ModuleList(nn.Embedding(c, hidden) for c in self.cardinalities)
        self.cell = nn.LSTMCell(2 * hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(2 * hidden, c) for c in self.cardinalities)

    def embed(self, budget_norm: torch.Tensor) -> torch.Tensor:
        """Budget embedding from Fourier features of the normalised budget (easy budget dependence)."""
        k = torch.arange(1, self.frequencies + 1, dtype=torch.float32) * torch.pi
        angles = (budget_norm.unsqueeze(2) * k).flatten(1)
        return self.budget_embed(torch.cat([budget_norm, torch.sin(angles), torch.cos(angles)], dim=1))

    def forward(self, budget_norm: torch.Tensor, generator: torch.Generator | None = None,
                greedy: bool = False, temperature: float = 1.0,
                forced: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample gene vectors; returns ``(genes (B, G) long, log_prob (B,), entropy (B,))``.
        With ``forced`` (B, G) the choices are those genes (teacher forcing) and ``log_prob`` is theirs."""
        batch = budget_norm.shape[0]
        embed = self.embed(budget_norm)
        h, c = torch.tanh(self.init_state(embed)).chunk(2, dim=1)
        token = self.start.expand(batch, -1)
        genes, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for index, head in enumerate(self.heads):
            h, c = self.cell(torch.cat([token, embed], dim=1), (h, c))
            logits = head(torch.cat([h, embed], dim=1)) / temperature
            dist = torch.distributions.Categorical(logits=logits)
            if forced is not None:
                choice = forced[:, index]
            elif greedy:
                choice = logits.argmax(dim=1)
            else:
                choice = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
            log_prob = log_prob + dist.log_prob(choice)
            entropy = entropy + dist.entropy()
            genes.append(choice)
            token = self.tokens[index](choice)
        return torch.stack(genes, dim=1), log_prob, entropy


RewardFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]
"""(genes (B, G), budget_norm (B, m)) -> reward (B,)."""

CloneFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""budget_norm (B, m) -> (target genes (B, G), has_target (B,) bool): what to imitate per budget."""


class ReinforceTrainer:
    """REINFORCE with a per-budget-bin moving-average baseline and an entropy bonus."""

    def __init__(self, policy: ArchGenerator, budget_dim: int, seed: int, lr: float = 2e-3,
                 entropy_weight: float = 0.02, baseline_bins: int = 10, baseline_momentum: float = 0.9):
        self.policy = policy
        self.budget_dim = budget_dim
        self.generator = torch.Generator().manual_seed(seed)
        seeded_init(policy, self.generator)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.entropy_weight = entropy_weight
        self.bins = baseline_bins
        self.momentum = baseline_momentum
        self.baseline = torch.zeros(baseline_bins)
        self.baseline_seen = torch.zeros(baseline_bins, dtype=torch.bool)

    def _bin(self, budget_norm: torch.Tensor) -> torch.Tensor:
        return (budget_norm.mean(dim=1) * self.bins).long().clamp(0, self.bins - 1)

    def step(self, reward_fn: RewardFn, batch_size: int, clone_fn: CloneFn | None = None,
             clone_weight: float = 0.0) -> tuple[float, float]:
        """One policy-gradient step on budgets drawn uniformly (plus ``clone_weight`` x the
        imitation loss of ``clone_fn``'s targets); returns (mean reward, mean entropy)."""
        self.policy.train()
        budget_norm = torch.rand(batch_size, self.budget_dim, generator=self.generator)
        genes, log_prob, entropy = self.policy(budget_norm, self.generator)
        reward = reward_fn(genes.numpy(), budget_norm.numpy()).detach().float()
        bins = self._bin(budget_norm)
        baseline = self.baseline[bins]
        # a bin's first batch has no history: use that batch's own mean in the bin
        for b in torch.unique(bins):
            mask = bins == b
            if not self.baseline_seen[b]:
                baseline[mask] = reward[mask].mean()
        advantage = reward - baseline
        advantage = advantage / (advantage.std() + 1e-6)
        loss = -(advantage * log_prob).mean() - self.entropy_weight * entropy.mean()
        if clone_fn is not None and clone_weight > 0:
            targets, has_target = clone_fn(budget_norm.numpy())
            if has_target.any():
                rows = torch.as_tensor(np.flatnonzero(has_target))
                _, target_log_prob, _ = self.policy(budget_norm[rows], forced=torch.as_tensor(targets[has_target]))
                loss = loss - clone_weight * target_log_prob.mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), 5.0)
        self.optimizer.step()
        with torch.no_grad():
            for b in torch.unique(bins):
                mean = reward[bins == b].mean()
                if self.baseline_seen[b]:
                    self.baseline[b] = self.momentum * self.baseline[b] + (1 - self.momentum) * mean
                else:
                    self.baseline[b], self.baseline_seen[b] = mean, True
        return float(reward.mean()), float(entropy.detach().mean())

    def train(self, reward_fn: RewardFn, steps: int, batch_size: int = 256, clone_fn: CloneFn | None = None,
              clone_weight: float = 0.0) -> list[tuple[float, float]]:
        return [self.step(reward_fn, batch_size, clone_fn, clone_weight) for _ in range(steps)]

    @torch.no_grad()
    def sample(self, budget_norm: np.ndarray, count: int, temperature: float = 1.0) -> np.ndarray:
        """``count`` gene vectors for one normalised budget vector (plus the greedy one first)."""
        self.policy.eval()
        budgets = torch.as_tensor(np.asarray(budget_norm, dtype=np.float32).reshape(1, -1)).expand(count, -1)
        genes, _, _ = self.policy(budgets, self.generator, temperature=temperature)
        greedy, _, _ = self.policy(budgets[:1], greedy=True)
        return torch.cat([greedy, genes]).numpy()
