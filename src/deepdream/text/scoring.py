"""Scoring token sequences: the objective at a position, the cross-entropy (fluency), and token gradients.

One `Scorer` serves the search, the corpus and the plots, so dreams and dataset windows are measured alike:
the model's prefix (BOS when it has one) precedes every text, and cross-entropy is the mean over the text's
tokens of -log p(token | the tokens before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SettingsError
from ..runtime import autocast
from .objectives import TextObjective
from .registry import LanguageModel
from .taps import TextTaps, resolve_tap, tap_widths


@dataclass
class Scores:
    """Per sequence: `activation` (B) at the chosen position, `xent` (B); `per_token` (B x T) when asked."""

    activation: torch.Tensor
    xent: torch.Tensor
    per_token: torch.Tensor | None = None


def cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """Mean -log p(token | earlier tokens) over the text (B), from B x (prefix + T) x V logits."""
    # logit i predicts token i+1: the text is predicted from prefix-1 on (from its 2nd token without a prefix)
    start = max(prefix - 1, 0)
    predicted = tokens[:, 1:] if prefix == 0 else tokens
    lp = torch.log_softmax(logits[:, start : start + predicted.shape[1]].float(), dim=-1)
    nll = -lp.gather(-1, predicted.unsqueeze(-1)).squeeze(-1)
    return nll.mean(-1) if nll.shape[1] else nll.sum(-1)  # one token without a prefix: nothing to predict


class Scorer:
    """Scores and token gradients of texts for one objective. `precision` ('fp32', 'bf16', 'fp16') is the
    arithmetic of `score` (autocast); the figures a user sees come from an fp32 scorer. Gradients stay fp32:
    in bf16 the backward keeps a cast copy of every weight (+0.4 GB at the peak, past the 2 GB target) for
    a 25 % faster pass."""

    # 24 texts per forward: as fast per text as 48 on a CPU and ~170 MB less peak memory (logits are B x T x V)
    def __init__(
        self, lm: LanguageModel, objective: TextObjective, position: int = -1, batch: int = 24, precision: str = "fp32"
    ):
        self.lm, self.objective, self.position, self.batch = lm, objective, position, batch
        self.precision = precision
        self.taps = [resolve_tap(lm.model, name) for name in objective.taps]
        objective.check(tap_widths(lm.model, lm.device))
        self.prefix = torch.tensor(lm.prefix, dtype=torch.long, device=lm.device)

    def check_length(self, length: int) -> None:
        """SettingsError when `position` does not fall inside a text of `length` tokens."""
        if not -length <= self.position < length:
            raise SettingsError(f"--position {self.position} is outside a text of {length} tokens")

    def _forward(
        self, embeds: torch.Tensor, tokens: torch.Tensor, per_token: bool, exact: bool = False
    ) -> tuple[Scores, torch.Tensor]:
        """Scores and the logits (B x (P+T) x V) of embeds (B x (P+T) x D: prefix + text); tokens: B x T.
        `exact`: in fp32 whatever the scorer's precision."""
        p = len(self.lm.prefix)
        arithmetic = "fp32" if exact else self.precision
        with TextTaps(self.lm.model, self.taps) as recorder, autocast(self.lm.device, arithmetic):
            logits = self.lm.model(inputs_embeds=embeds).logits  # B x (P+T) x V
            acts = {name: value[:, p:] for name, value in recorder.acts.items()}
        values = self.objective.values(acts, logits[:, p:])  # B x T
        scores = Scores(values[:, self.position], cross_entropy(logits, tokens, p), values if per_token else None)
        return scores, logits

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        full = torch.cat([self.prefix.expand(tokens.shape[0], -1), tokens], dim=1)
        return self.lm.model.get_input_embeddings()(full)

    def score(self, tokens: torch.Tensor, per_token: bool = False) -> Scores:
        """Scores of B x T token ids, in batches, without autograd."""
        parts = []
        with torch.inference_mode():
            for chunk in tokens.to(self.lm.device).split(self.batch):
                parts.append(self._forward(self._embed(chunk), chunk, per_token)[0])
        return Scores(
            torch.cat([s.activation for s in parts]).cpu(),
            torch.cat([s.xent for s in parts]).cpu(),
            torch.cat([s.per_token for s in parts]).cpu() if per_token else None,
        )

    def gradients(self, tokens: torch.Tensor, lambdas: torch.Tensor) -> tuple[torch.Tensor, Scores, torch.Tensor]:
        """d(activation - lambda * xent) / d one-hot tokens for the whole population in one backward (B x T x V),
        the scores, and log p(v | the tokens before t) for every position t and token v (B x T x V, free from
        the same forward): the own-token term of the cross-entropy, which the gradient does not see."""
        tokens = tokens.to(self.lm.device)
        weights = self.lm.embeddings
        onehot = torch.zeros(*tokens.shape, weights.shape[0], device=weights.device, dtype=weights.dtype)
        onehot.scatter_(-1, tokens.unsqueeze(-1), 1.0)
        onehot.requires_grad_(True)
        prefix = self.lm.model.get_input_embeddings()(self.prefix).expand(tokens.shape[0], -1, -1)
        with torch.enable_grad():
            text = onehot @ weights  # B x T x D
            scores, logits = self._forward(torch.cat([prefix, text], dim=1), tokens, False, exact=True)
            fitness = scores.activation - lambdas.to(weights.device) * scores.xent
            (grad,) = torch.autograd.grad(fitness.sum(), onehot)
        scores = Scores(scores.activation.detach().cpu(), scores.xent.detach().cpu())
        return grad.detach(), scores, next_logprobs(logits.detach(), len(self.lm.prefix), tokens.shape[1])


def next_logprobs(logits: torch.Tensor, prefix: int, length: int) -> torch.Tensor:
    """B x length x V: log p(v at text position t | everything before t); zeros where nothing precedes t."""
    start = max(prefix - 1, 0)
    lp = torch.log_softmax(logits[:, start : start + length - (prefix == 0)].float(), dim=-1)
    if prefix == 0:  # the first token has no context: a flat prior
        lp = torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)
    return lp
