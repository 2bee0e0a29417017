"""Text dreaming on tiny random language models (2 layers, a word-level tokenizer built here; never a download)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from deepdream.cli import main  # noqa: E402
from deepdream.errors import ModelError, SettingsError, TextError, WeightsUnavailable  # noqa: E402
from deepdream.text import Direction, LayerEnergy, Neuron, NextToken, TextSettings, dream_text  # noqa: E402
from deepdream.text.corpus import read_corpus, score_windows, windows  # noqa: E402
from deepdream.text.dreaming import DreamedText, choose  # noqa: E402
from deepdream.text.epo import (  # noqa: E402
    WINDOW_SPAN,
    Frontier,
    Point,
    _best_per_slot,
    candidates,
    epo,
    pareto_layers,
    sample_texts,
    sampled_tokens,
    sampled_windows,
    slot_fitness,
)
from deepdream.text.registry import load_language_model  # noqa: E402
from deepdream.text.scoring import Scorer, Scores  # noqa: E402
from deepdream.text.taps import TextTaps, find_taps, resolve_tap, tap_widths  # noqa: E402

WORDS = (
    "the cat dog sat on a mat and ran to red blue big small house tree sun moon day night is was very "
    "happy sad old new car road city green bird sky water fish boat sea"
).split()
MLP = "model.layers.1.mlp"


def tiny_model_folder(folder: Path, kind: str = "llama") -> Path:
    """config.json (2 layers, random weights) and a word-level tokenizer.json with a <s> token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<s>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<s>", "<unk>"])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    if kind == "llama":
        config = dict(
            model_type="llama",
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=0,
            tie_word_embeddings=False,
            initializer_range=0.3,
        )
    else:
        config = dict(
            model_type="gpt2",
            vocab_size=len(vocab),
            n_embd=32,
            n_inner=40,
            n_layer=2,
            n_head=2,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
            initializer_range=0.3,
        )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def lm(folder):
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared machine
    return load_language_model(f"config:{folder}")


def run(lm, **kw):
    values = dict(
        model=lm.name,
        layer=MLP,
        neuron=3,
        length=6,
        iterations=6,
        population=4,
        children=6,
        topk=8,
        seed=1,
        restart_every=2,
    )
    values.update(kw)
    return dream_text(lm=lm, **values)


# ---------------------------------------------------------------- taps and objectives


def test_taps_read_the_mlp_hidden_units_and_block_outputs(lm, tmp_path):
    taps = find_taps(lm.model)
    assert [n for n in taps] == ["model.layers.0.mlp", "model.layers.0", MLP, "model.layers.1"]
    assert tap_widths(lm.model) == {"model.layers.0.mlp": 48, "model.layers.0": 32, MLP: 48, "model.layers.1": 32}
    mlp = lm.model.model.layers[1].mlp
    seen = {}
    handle = mlp.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    ids = torch.tensor([[0, 5, 6, 7]])
    with TextTaps(lm.model, [taps[MLP]]) as rec, torch.inference_mode():
        lm.model(input_ids=ids)
        hidden = rec.acts[MLP]
    handle.remove()
    x = seen["x"]
    expected = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)  # Llama: act(gate(x)) * up(x)
    assert torch.allclose(hidden, expected, atol=1e-6)
    assert not mlp._forward_pre_hooks  # the hooks are gone after the block

    gpt2 = load_language_model(f"config:{tiny_model_folder(tmp_path / 'gpt2', 'gpt2')}")
    assert tap_widths(gpt2.model)["transformer.h.1.mlp"] == 40  # GPT-2: the activation's output (n_inner)


def test_unknown_layer_suggests_names(lm):
    with pytest.raises(ModelError, match="did you mean model.layers.1.mlp"):
        resolve_tap(lm.model, "model.layers.1.mpl")


def test_objectives_add_and_weight(lm):
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    a, e = Scorer(lm, Neuron(MLP, 3)).score(ids), Scorer(lm, LayerEnergy("model.layers.1")).score(ids)
    both = Scorer(lm, Neuron(MLP, 3) + 0.5 * LayerEnergy("model.layers.1")).score(ids)
    assert torch.allclose(both.activation, a.activation + 0.5 * e.activation, atol=1e-5)
    assert torch.allclose(both.xent, a.xent)
    assert (e.activation > 0).all()


# ---------------------------------------------------------------- the search


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_objective_really_rises(lm, precision):
    result = run(lm, iterations=8, precision=precision)
    assert result.settings.precision == precision
    start = result.history[0]["best_activation"]
    assert result.frontier[-1].activation > start
    # the reported figures are the fp32 model's own, whatever the search ran in: rescoring gives them back,
    # and the frontier is Pareto on them
    exact = Scorer(lm, Neuron(MLP, 3)).score(torch.tensor([p.tokens for p in result.frontier]))
    assert torch.allclose(exact.activation, torch.tensor([p.activation for p in result.frontier]), atol=1e-5)
    assert torch.allclose(exact.xent, torch.tensor([p.xent for p in result.frontier]), rtol=1e-4)
    xents, acts = [p.xent for p in result.frontier], [p.activation for p in result.frontier]
    assert xents == sorted(xents) and acts == sorted(acts) and len(set(acts)) == len(acts)


def test_anchored_slots_keep_the_most_active_text_within_their_ceiling(lm):
    scores = Scores(torch.tensor([5.0, 1.0, 2.0, float("nan")]), torch.tensor([9.0, 3.0, 2.0, 1.0]))
    # a lambda slot weighs; an anchored slot (ceiling 3) takes the most active text within it, and over it
    # ranks the nearest first; NaN is never taken
    fitness = slot_fitness(scores, torch.tensor([1.0, 1.0]), torch.tensor([math.inf, 3.0]))
    assert fitness[0, :3].tolist() == [-4.0, -2.0, 0.0] and fitness[1].argmax() == 2
    assert fitness[1, 1] > fitness[1, 0] and fitness[:, 3].eq(-math.inf).all()
    high = slot_fitness(scores, torch.tensor([1.0]), torch.tensor([2.5]))[0]
    assert high.argmax() == 2 and high[1] > high[0]  # 1 is over by 0.5, 0 by 6.5
    low = slot_fitness(scores, torch.tensor([1.0]), torch.tensor([0.5]))[0]
    assert low.argmax() == 2  # none within: the lowest cross-entropy
    # a text the anchored slot may not hold (from a sentence: too few of its tokens kept) is never taken by it
    holds = torch.tensor([True, True, False, True])
    masked = slot_fitness(scores, torch.tensor([1.0, 1.0]), torch.tensor([math.inf, 3.0]), holds)
    assert masked[1].argmax() == 1 and masked[1, 2] == -math.inf and masked[0, 2] == fitness[0, 2]

    # from nothing the ceilings are the start texts' median and upper quartile (the default start: windows of
    # the model's samples and their first windows); from a sentence 1.5x its own
    result = run(lm, anchored=2, samples=16, iterations=3)
    allowed = torch.tensor(sorted(set(range(lm.vocab_size)) - set(lm.banned)))
    searching = Scorer(lm, Neuron(MLP, 3), precision=result.settings.precision)  # "auto" resolved
    sampled = sampled_windows(searching, 16, 6, allowed, torch.Generator().manual_seed(1))
    xent = searching.score(sampled).xent
    assert result.ceilings == pytest.approx([float(xent.quantile(0.5)), float(xent.quantile(0.75))], rel=1e-4)
    sentence = run(lm, text="the cat sat", anchored=1, iterations=2, precision="fp32")  # bounds: the search's figures
    assert sentence.ceilings == pytest.approx([1.5 * sentence.start.xent], rel=1e-4)
    assert dream_text(settings=sentence.settings, lm=lm).ceilings == sentence.ceilings


def test_best_never_gets_worse_and_the_frontier_is_pareto(lm):
    seen: list[list[float]] = []
    result = run(
        lm,
        iterations=8,
        restart_every=2,
        on_iteration=lambda s: seen.append([s.frontier.best(lam).fitness(lam) for lam in s.lambdas]),
    )
    for before, after in zip(seen, seen[1:]):  # restarts at 2, 4, 6 included
        assert all(b <= a + 1e-9 for b, a in zip(before, after))
    acts = [h["best_activation"] for h in result.history]
    assert acts == sorted(acts)
    pts = result.frontier
    assert len(pts) >= 2
    for p in pts:
        assert not any(q is not p and q.activation >= p.activation and q.xent <= p.xent for q in pts)


def test_candidates_rank_by_gradient_plus_own_log_probability():
    gen = torch.Generator().manual_seed(0)
    grad, logp = torch.randn(3, 4, 20, generator=gen), torch.randn(3, 4, 20, generator=gen)
    tokens = torch.randint(20, (3, 4), generator=gen)
    lambdas, banned = torch.tensor([0.1, 1.0, 10.0]), torch.zeros(20, dtype=torch.bool)
    banned[[0, 7]] = True

    def expected(score):
        score = score.clone()
        score[..., banned] = -math.inf
        score.scatter_(-1, tokens.unsqueeze(-1), -math.inf)
        return score.topk(5, dim=-1).indices

    assert torch.equal(candidates(grad, logp, tokens, lambdas, 0.0, banned, 5), expected(grad))
    # the fluent half: the own-token term weighted by the slot's lambda over the text's length, times `fluency`;
    # the other half: the gradient's own best
    weighted = grad + 2.0 * lambdas[:, None, None] / 4 * logp
    mixed = candidates(grad, logp, tokens, lambdas, 2.0, banned, 5)
    assert torch.equal(mixed, torch.cat([expected(weighted)[..., :3], expected(grad)[..., :2]], dim=-1))
    fluent = candidates(grad, logp, tokens, lambdas, 1e6, banned, 5)
    assert torch.equal(fluent[..., :3], expected(logp)[..., :3])  # a huge weight: the model's own likeliest tokens
    assert not bool((fluent[..., None] == torch.tensor([0, 7])).any())
    assert not bool((fluent == tokens[..., None]).any())


def test_next_logprobs_are_the_models_own(lm):
    tokens = torch.tensor([lm.encode("the cat sat on a mat"), lm.encode("a big dog ran to sea")])
    _, _, logp = Scorer(lm, Neuron(MLP, 3)).gradients(tokens, torch.ones(2))
    assert logp.shape == (2, 6, lm.vocab_size)
    with torch.inference_mode():
        for t in (0, 3, 5):
            full = torch.cat([torch.tensor([lm.prefix] * 2), tokens[:, :t]], dim=1)
            want = torch.log_softmax(lm.model(input_ids=full).logits[:, -1].float(), dim=-1)
            assert torch.allclose(logp[:, t], want, atol=1e-4)


def test_sampled_starts_are_cached_exactly_and_each_slot_takes_its_best(lm):
    allowed = torch.arange(2, lm.vocab_size)
    scorer = Scorer(lm, Neuron(MLP, 3))
    got = sampled_tokens(scorer, 5, 6, allowed, torch.Generator().manual_seed(4))
    # the same draws without a key/value cache: a full forward per token
    gen, mask = torch.Generator().manual_seed(4), torch.full((lm.vocab_size,), -math.inf)
    mask[allowed] = 0.0
    ref = torch.tensor([lm.prefix] * 5)
    with torch.inference_mode():
        for _ in range(6):
            probs = torch.softmax(lm.model(input_ids=ref).logits[:, -1].float() + mask, dim=-1)
            ref = torch.cat([ref, torch.multinomial(probs, 1, generator=gen)], dim=1)
    assert torch.equal(got, ref[:, len(lm.prefix) :])

    scores = Scores(torch.tensor([0.0, 3.0, 1.0, 2.9]), torch.tensor([1.0, 9.0, 1.0, 8.0]))

    def starts(lambdas: torch.Tensor) -> list[int]:  # lambda slots only: no ceiling
        return _best_per_slot(slot_fitness(scores, lambdas, torch.full_like(lambdas, math.inf))).tolist()

    # lambda 0.01 wants text 1, and so does 0.02: it takes the next best (3); lambda 10 takes 2, then 0
    assert starts(torch.tensor([0.01, 0.02, 10.0, 10.0])) == [1, 3, 2, 0]
    # more slots than texts: once each is used, a slot takes its best again
    assert starts(torch.full((6,), 10.0)) == [2, 0, 3, 1, 2, 2]
    result = run(lm, samples=16, iterations=1)
    assert result.history[0]["frontier_size"] >= 1 and len(result.frontier) >= 1


def test_sampling_reads_each_token_in_its_context_as_a_full_forward_does(lm):
    allowed = torch.arange(2, lm.vocab_size)  # ids 0 and 1 banned: the figures are still the model's own
    scorer = Scorer(lm, Neuron(MLP, 3))
    texts, values, nll = sample_texts(scorer, 5, 9, allowed, torch.Generator().manual_seed(4), read=True)
    assert torch.equal(texts, sampled_tokens(scorer, 5, 9, allowed, torch.Generator().manual_seed(4)))
    full = scorer.score(texts, per_token=True)
    assert torch.allclose(values, full.per_token, atol=1e-4)
    assert torch.allclose(nll.mean(1), full.xent, atol=1e-4)


def test_pareto_layers_take_whole_fronts_until_enough():
    activation = torch.tensor([1.0, 3.0, 2.0, 0.0, 2.5, float("nan")])
    xent = torch.tensor([1.0, 3.0, 2.0, 0.5, 3.0, 0.1])
    assert pareto_layers(activation, xent, 4).tolist() == [3, 0, 2, 1]  # by cross-entropy; 4 is beaten by 1
    assert pareto_layers(activation, xent, 5).tolist() == [3, 0, 2, 1, 4]  # then the next front
    assert pareto_layers(activation, xent, 50).tolist() == [3, 0, 2, 1, 4]  # NaN never


def test_window_starts_are_windows_of_the_models_samples_and_hold_its_plain_starts(lm):
    allowed = torch.arange(2, lm.vocab_size)
    scorer = Scorer(lm, Neuron(MLP, 3))
    found = sampled_windows(scorer, 6, 4, allowed, torch.Generator().manual_seed(7))
    texts = sampled_tokens(scorer, 6, 4 * WINDOW_SPAN, allowed, torch.Generator().manual_seed(7))  # same draws
    inside = {tuple(w) for w in texts.unfold(1, 4, 1).reshape(-1, 4).tolist()}
    assert {tuple(w) for w in found.tolist()} <= inside and len(found) >= 6
    assert {tuple(t) for t in texts[:, :4].tolist()} <= {tuple(w) for w in found.tolist()}
    # a superset of the plain samples' starts: no fluency weight starts worse
    plain, windowed = run(lm, iterations=1, start="sample"), run(lm, iterations=1, start="windows")
    for a, b in zip(plain.history[0]["best_fitness"], windowed.history[0]["best_fitness"]):
        assert b >= a - 1e-6


def test_frontier_drops_dominated_points():
    f = Frontier(
        [
            Point((1,), 1.0, 2.0, 0),
            Point((2,), 2.0, 1.0, 0),
            Point((3,), 0.5, 3.0, 0),
            Point((4,), 3.0, 4.0, 0),
            Point((5,), 3.0, 5.0, 0),
        ]
    )
    assert [p.tokens for p in f.points] == [(2,), (4,)]


def test_from_a_sentence_the_anchored_slots_hold_only_texts_that_keep_enough_of_it(lm):
    scorer = Scorer(lm, Neuron(MLP, 3))
    sentence = torch.tensor(lm.encode("the cat sat on a mat"))
    options = TextSettings(layer=MLP, neuron=3, population=4, anchored=2, iterations=8, restart_every=2).search()
    allowed = torch.arange(lm.vocab_size)
    start = sentence.expand(4, -1)

    def search(min_kept: float):
        gen = torch.Generator().manual_seed(0)
        return epo(scorer, start, torch.ones(6, dtype=torch.bool), options, gen, allowed, None, 1.5, sentence, min_kept)

    strict, free = search(1.0), search(0.0)  # 1.0: every token kept, so no edit at all
    assert all(p.tokens == tuple(sentence.tolist()) for p in strict.slots[4:])
    assert any(p.tokens != tuple(sentence.tolist()) for p in free.slots[4:])  # without it they do move
    assert any(p.tokens != tuple(sentence.tolist()) for p in strict.slots[:4])  # the lambda slots are free


def test_the_shown_dream_is_never_less_active_than_the_sentence(lm):
    start = DreamedText("a b", [1, 2], 2.0, 4.0, 0, ["a", " b"], [0.0, 2.0])
    weaker = DreamedText("a c", [1, 3], 1.5, 3.0, 3, ["a", " c"], [0.0, 1.5])
    stronger = DreamedText("a d", [1, 4], 3.0, 5.0, 4, ["a", " d"], [0.0, 3.0])
    too_far = DreamedText("e f", [5, 6], 9.0, 4.0, 5, ["e", " f"], [0.0, 9.0])
    assert choose([weaker, too_far], start) is start  # the frontier dropped the sentence: it still shows
    assert choose([weaker, stronger, too_far], start) is stronger
    plain = run(lm, text="the cat sat", anchored=0, iterations=2)  # no anchored slot: only the frontier to show
    assert plain.chosen.activation >= plain.start.activation


def test_seed_reproduces_the_run(lm):
    a, b, c = run(lm, seed=7), run(lm, seed=7), run(lm, seed=8)
    assert [(p.tokens, p.activation) for p in a.frontier] == [(p.tokens, p.activation) for p in b.frontier]
    assert [p.tokens for p in a.frontier] != [p.tokens for p in c.frontier]


def test_from_a_sentence_keeps_the_masked_tokens(lm):
    sentence = "the cat sat on a mat"
    ids = lm.encode(sentence)
    result = run(lm, text=sentence, keep=(0, 2, 5), iterations=6)
    assert result.start.tokens == ids
    changed = set()
    for p in result.frontier:
        assert [p.tokens[i] for i in (0, 2, 5)] == [ids[i] for i in (0, 2, 5)]
        changed |= {i for i, (a, b) in enumerate(zip(p.tokens, ids)) if a != b}
    assert changed  # it did edit the others
    assert result.chosen.activation >= result.start.activation
    assert result.chosen.xent <= 1.5 * result.start.xent


def test_next_token_rises_and_direction_is_checked(lm, tmp_path):
    result = run(lm, layer=None, neuron=None, target_token="dog", iterations=6)
    dog = lm.encode("dog")[0]
    probs = Scorer(lm, NextToken(dog)).score(torch.tensor([p.tokens for p in result.frontier])).activation
    assert float(probs.max()) > result.history[0]["best_activation"] - 1e-6
    assert float(probs.max()) > math.log(1 / lm.vocab_size)  # better than a uniform guess

    np.save(tmp_path / "probe.npy", np.ones(32, np.float32))
    ok = run(lm, layer="model.layers.1", neuron=None, direction=str(tmp_path / "probe.npy"), iterations=2)
    assert ok.objective == "probe.npy(model.layers.1)"
    with pytest.raises(SettingsError, match="has 32 values but model.layers.1.mlp is 48 wide"):
        run(lm, neuron=None, direction=str(tmp_path / "probe.npy"))
    t = Direction("model.layers.1", torch.ones(32))
    assert Scorer(lm, t).score(torch.tensor([[5, 6]])).activation.shape == (1,)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(neuron=48), ModelError, "neuron 48 is past the width of model.layers.1.mlp"),
        (dict(layer="model.layers.7.mlp"), ModelError, "unknown layer"),
        (dict(text="   "), SettingsError, "start text is empty"),
        (dict(text="the cat sat on a mat and ran"), TextError, "longer than --length"),
        (dict(length=0), SettingsError, "length"),
        (dict(population=0), SettingsError, "population"),
        (dict(lambda_min=float("nan")), SettingsError, "lambda-min"),
        (dict(lambda_max=-1.0), SettingsError, "lambda-max"),
        (dict(lambda_min=5.0, lambda_max=1.0), SettingsError, "above"),
        (dict(target_token="cat dog", layer=None, neuron=None), SettingsError, "is 2 tokens"),
        (dict(text="the cat", keep=(0, 1)), SettingsError, "nothing is left"),
        (dict(position=9), SettingsError, "outside a text of 6 tokens"),
        (dict(samples=0), SettingsError, "samples"),
        (dict(fluency=-1.0), SettingsError, "fluency"),
        (dict(fluency=float("nan")), SettingsError, "fluency"),
        (dict(precision="fp64"), SettingsError, "precision must be one of"),
    ],
)
def test_bad_settings_are_one_clear_error(lm, changes, error, message):
    with pytest.raises(error, match=message):
        run(lm, **changes)


# ---------------------------------------------------------------- corpus


def test_corpus_windows_are_scored_like_dreams(lm, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on a mat and the dog ran to the red house in the city by the sea\n" * 3)
    found = windows(lm, read_corpus(path), 6)
    assert found.shape == (len(lm.encode(path.read_text())) - 5, 6)
    scores = score_windows(lm, [Neuron(MLP, 3), Neuron(MLP, 4)], found, batch=7)
    best = scores.top(1)[0]
    alone = Scorer(lm, Neuron(MLP, 3)).score(found[best : best + 1])
    assert math.isclose(float(scores.activation[best, 0]), float(alone.activation), rel_tol=1e-4, abs_tol=1e-5)
    assert math.isclose(float(scores.xent[best]), float(alone.xent), rel_tol=1e-4)
    assert float(scores.activation[best, 0]) == float(scores.activation[:, 0].max())

    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(TextError, match="not UTF-8"):
        read_corpus(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(TextError, match="is empty"):
        read_corpus(tmp_path / "empty.txt")


# ---------------------------------------------------------------- models


def test_corrupt_gguf_and_offline_hub_names_are_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(200))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="truncated, corrupt"):
        load_language_model(str(bad))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: the env is too late
    with pytest.raises(WeightsUnavailable, match="huggingface-cli download nobody/no-such-model"):
        load_language_model("nobody/no-such-model")
    with pytest.raises(WeightsUnavailable, match="did you mean smollm2-135m"):
        load_language_model("smollm2-135")


# ---------------------------------------------------------------- the command


def cli(folder: Path, *extra: str) -> list[str]:
    return [
        "text",
        "--model",
        f"config:{folder}",
        "--layer",
        MLP,
        "--neuron",
        "3",
        "--length",
        "5",
        "--iterations",
        "3",
        "--population",
        "3",
        "--children",
        "4",
        "--topk",
        "8",
        "-q",
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--neuron", "99"], "neuron 99 is past the width"),
        (["--layer", "model.layers.1.mpl"], "did you mean model.layers.1.mlp"),
        (["", "--seed", "1"], "start text is empty"),
        (["the cat sat on a mat and ran", "--seed", "1"], "longer than --length (5)"),
        (["--corpus", "CORPUS_LATIN1"], "not UTF-8"),
        (["--corpus", "CORPUS_EMPTY"], "is empty"),
        (["--direction", "PROBE"], "has 7 values"),
        (["--config", "PROBE"], "not a dreams.json"),
        (["-o", "out.txt"], "written as .json"),
    ],
)
def test_cli_bad_input_is_one_line(folder, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "empty.txt").write_text("")
    np.save(tmp_path / "probe.npy", np.ones(7, np.float32))
    swap = {"CORPUS_LATIN1": "latin1.txt", "CORPUS_EMPTY": "empty.txt", "PROBE": "probe.npy"}
    extra = [swap.get(e, e) for e in extra]
    args = cli(folder, *extra)
    if extra and not extra[0].startswith("-"):  # a start sentence goes first
        args = ["text", extra[0], *cli(folder, *extra[1:])[1:]]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize(
    "option",
    [
        "--length=0",
        "--population=0",
        "--lambda-min=nan",
        "--lambda-max=-1",
        "--samples=0",
        "--fluency=-1",
        "--anchored=-1",
    ],
)
def test_cli_bad_numbers_are_usage_errors(folder, capsys, option):
    with pytest.raises(SystemExit) as exit_:
        main(cli(folder, option))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_cli_end_to_end_in_a_subprocess(folder, tmp_path):
    out, plot = tmp_path / "dreams.json", tmp_path / "frontier.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepdream",
            *cli(folder, "--seed", "3", "-o", str(out), "--plot", str(plot), "the cat sat on a"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "activation" in done.stdout and "x-entropy" in done.stdout and "# start beside dream" in done.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["seed"] == 3 and data["settings"]["text"] == "the cat sat on a"
    assert data["frontier"] and all(len(p["tokens"]) == 5 == len(p["per_token"]) for p in data["frontier"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --config reads the settings back and reproduces the run
    again = tmp_path / "again.json"
    assert main(["text", "--config", str(out), "-q", "-o", str(again)]) == 0
    assert [p["tokens"] for p in json.loads(again.read_text())["frontier"]] == [p["tokens"] for p in data["frontier"]]
    # the corpus mode prints its top windows
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the big dog sat on the old mat and the small cat ran to the sea " * 2)
    assert main(cli(folder, "--corpus", str(corpus), "--top", "3", "-o", str(tmp_path / "top.json"))) == 0
    # -o writes the printed top windows: the corpus's best, scored as dreams are
    top = json.loads((tmp_path / "top.json").read_text())
    assert top["format"] == "deepdream-corpus/1" and len(top["top"]) == 3
    lm = load_language_model(f"config:{folder}")
    found = windows(lm, read_corpus(corpus), 5)
    scores = score_windows(lm, [Neuron(MLP, 3)], found)
    want = [float(scores.activation[i, 0]) for i in scores.top(3)]
    assert [w["activation"] for w in top["top"]] == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert top["top"][0]["tokens"] == found[scores.top(1)[0]].tolist()
    assert top["median_cross_entropy"] == pytest.approx(float(scores.xent.median()), rel=1e-4)


def test_ctrl_c_leaves_no_file(folder, tmp_path):
    out = tmp_path / "dreams.json"
    args = [sys.executable, "-m", "deepdream", *cli(folder, "--iterations", "100000", "-o", str(out))]
    args.remove("-q")
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (tmp_path / ".dreams.json.lock").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)  # well inside the search
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_layers_and_models_list_language_models(folder, capsys):
    assert main(["layers", "--model", f"config:{folder}"]) == 0
    out = capsys.readouterr().out
    assert "model.layers.1.mlp" in out and "48" in out and "block" in out
    assert main(["models"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out


def test_start_choices_match_the_registry(lm):
    from deepdream.text.epo import STARTS
    from deepdream.text.settings import START_CHOICES

    assert set(START_CHOICES) == set(STARTS)
    sampled, uniform = run(lm, iterations=1, start="sample"), run(lm, iterations=1, start="random")
    # the model's own texts read better than random tokens: a lower cross-entropy at the start
    assert sampled.history[0]["best_fitness"][-1] > uniform.history[0]["best_fitness"][-1]


def test_settings_round_trip():
    s = TextSettings(layer=MLP, neuron=2, text="a b", keep=(1,), seed=4)
    assert TextSettings.from_mapping(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(SettingsError, match="unknown text setting"):
        TextSettings.from_mapping({**s.to_dict(), "colour": 1})


def test_a_config_from_before_precision_was_saved_runs_in_fp32(tmp_path):
    from deepdream.cli.text import read_config

    saved = {k: v for k, v in TextSettings(layer=MLP, neuron=2, seed=4).to_dict().items() if k != "precision"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "deepdream-text/1", "settings": saved}))
    assert read_config(str(path))["precision"] == "fp32"
    path.write_text(json.dumps({"format": "deepdream-text/1", "settings": {**saved, "precision": "bf16"}}))
    assert read_config(str(path))["precision"] == "bf16"
