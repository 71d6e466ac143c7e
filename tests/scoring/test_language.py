"""Language data: DLC from a causal LM on instructions and from MiniLM on labelled texts.

Known answers come from a tiny Llama trained in the test to reverse its instruction's words
(``lm_helpers``) and from MiniLM features of templated sentences on three topics.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn.utils import prune

from dlcprune.core.errors import ParameterError
from dlcprune.core.formats import open_dataset
from dlcprune.core.params import DLCParams
from tests.scoring.lm_helpers import (
    WORDS,
    build_reverse_task_lm,
    reverse_rows,
    write_alpaca,
    write_jsonl,
)
from worker.scoring.backbones import Backbone, load_backbone
from worker.scoring.dlc import ScoreResult, score
from worker.scoring.masking import MaskPlan, WeightMasker, mask_counts
from worker.scoring.text import tokenize_texts

TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "sports": (
        ["The striker", "Our goalkeeper", "The coach", "The home team", "The tennis champion"],
        [
            "scored a late goal",
            "won the league title",
            "trained hard before the match",
            "lost the penalty shootout",
            "broke the sprint record",
            "signed a new contract with the club",
        ],
        ["in the second half", "at the stadium", "during the tournament", "in front of the fans"],
    ),
    "cooking": (
        ["The chef", "My grandmother", "The baker", "Our cook", "The pastry student"],
        [
            "baked a loaf of sourdough bread",
            "simmered the tomato sauce",
            "chopped onions and garlic",
            "roasted the chicken with herbs",
            "whisked eggs for the omelette",
            "seasoned the soup with pepper",
        ],
        ["in the kitchen", "for dinner", "before the guests arrived", "in a cast iron pan"],
    ),
    "finance": (
        ["The central bank", "Investors", "The company", "The hedge fund", "Our accountant"],
        [
            "raised interest rates",
            "sold shares of the stock",
            "reported quarterly earnings",
            "cut the dividend",
            "bought government bonds",
            "filed the annual tax return",
        ],
        ["after the market closed", "this fiscal year", "amid inflation fears", "on Wall Street"],
    ),
}

LM_MAX_LENGTH = 96


def text_rows(per_topic: int, flips: int, seed: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """``per_topic`` templated sentences per topic with ``flips`` labels moved to another topic.

    Returns the rows (``id``, ``text``, ``label``) and the (N,) bool mask of flipped labels.
    """
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    rows, topics = [], []
    for t, name in enumerate(names):
        subjects, verbs, endings = TOPICS[name]
        for _ in range(per_topic):
            s, v, e = (parts[rng.integers(len(parts))] for parts in (subjects, verbs, endings))
            rows.append(f"{s} {v} {e}.")
            topics.append(t)
    flipped = np.zeros(len(rows), dtype=bool)
    flipped[rng.choice(len(rows), flips, replace=False)] = True
    labels = [
        names[(t + int(rng.integers(1, len(names)))) % len(names)] if f else names[t]
        for t, f in zip(topics, flipped, strict=True)
    ]
    out = [
        {"id": f"t{i}", "text": text, "label": label}
        for i, (text, label) in enumerate(zip(rows, labels, strict=True))
    ]
    return out, flipped


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return copy.deepcopy(model.state_dict())


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in after.items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------------------------
# Fixtures: the tiny LM is trained once per module, the data sets scored once where shared.


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    t0 = time.perf_counter()
    out = build_reverse_task_lm(tmp_path_factory.mktemp("lm") / "reverse-lm", seed=0)
    print(f"\ntiny LM trained in {time.perf_counter() - t0:.1f} s")
    return out


@pytest.fixture(scope="module")
def lm(lm_dir: Path) -> Backbone:
    return load_backbone(str(lm_dir))


@pytest.fixture(scope="module")
def minilm() -> Backbone:
    return load_backbone("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def reverse_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """40 rule-following and 40 random responses, interleaved; True marks a random one."""
    follow = reverse_rows(40, seed=101, follow_rule=True)
    random_ = reverse_rows(40, seed=202, follow_rule=False)
    rows = [r for pair in zip(follow, random_, strict=True) for r in pair]
    is_random = np.tile([False, True], 40)
    path = write_alpaca(tmp_path_factory.mktemp("reverse") / "reverse.jsonl", rows)
    return path, is_random


@pytest.fixture(scope="module")
def reverse_scored(reverse_data: tuple[Path, np.ndarray], lm: Backbone) -> ScoreResult:
    with open_dataset(reverse_data[0]) as ds:
        return score(
            ds,
            lm,
            DLCParams(levels=3, step=0.2, batch_size=8, max_length=LM_MAX_LENGTH),
            return_losses=True,
        )


@pytest.fixture(scope="module")
def topic_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rows, flipped = text_rows(per_topic=40, flips=15, seed=0)
    return write_jsonl(tmp_path_factory.mktemp("topics") / "topics.jsonl", rows), flipped


@pytest.fixture(scope="module")
def topic_scored(topic_data: tuple[Path, np.ndarray], minilm: Backbone) -> ScoreResult:
    with open_dataset(topic_data[0]) as ds:
        return score(ds, minilm, DLCParams(levels=5, max_length=64, batch_size=16))


# --------------------------------------------------------------------------------------------
# Known answers


@pytest.mark.slow
def test_lm_ranks_responses_that_break_the_rule_as_hard(
    reverse_data: tuple[Path, np.ndarray], reverse_scored: ScoreResult
) -> None:
    _, is_random = reverse_data
    r = reverse_scored
    assert r.scores.shape == (80,) and r.scores.dtype == np.float32
    assert np.isfinite(r.scores).all() and r.unscored == []
    assert r.losses is not None and r.losses.shape == (4, 80)
    assert r.tokens is not None and r.tokens.dtype == np.int32
    # Every response word is one token, plus the <eos>.
    with open_dataset(reverse_data[0]) as ds:
        words = [len(s.response.split()) + 1 for _, s in ds.iter_payloads()]
    assert r.tokens.tolist() == words
    assert r.mask_fractions[1:] == pytest.approx([0.2, 0.36, 0.488], abs=1e-3)
    auc = roc_auc_score(is_random, r.scores)
    unmasked = roc_auc_score(is_random, r.losses[0])
    print(f"AUROC of DLC (tiny LM) for random responses: {auc:.3f} (unmasked loss {unmasked:.3f})")
    assert auc >= 0.9


@pytest.mark.slow
def test_minilm_ranks_flipped_topic_labels_as_hard(
    topic_data: tuple[Path, np.ndarray], topic_scored: ScoreResult
) -> None:
    _, flipped = topic_data
    r = topic_scored
    assert r.scores.shape == (120,) and np.isfinite(r.scores).all()
    assert r.tokens is None and r.unscored == []
    assert r.classes == ["cooking", "finance", "sports"]
    auc = roc_auc_score(flipped, r.scores)
    print(f"AUROC of DLC (MiniLM) for flipped topic labels: {auc:.3f} ({flipped.sum()} of 120)")
    assert auc >= 0.85


# --------------------------------------------------------------------------------------------
# Batching and padding


@pytest.mark.slow
def test_lm_scores_do_not_depend_on_the_batch_size(
    reverse_data: tuple[Path, np.ndarray], reverse_scored: ScoreResult, lm: Backbone
) -> None:
    with open_dataset(reverse_data[0]) as ds:
        single = score(
            ds,
            lm,
            DLCParams(levels=3, step=0.2, batch_size=1, max_length=LM_MAX_LENGTH),
            return_losses=True,
        )
    assert reverse_scored.losses is not None and single.losses is not None
    np.testing.assert_allclose(reverse_scored.losses, single.losses, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reverse_scored.scores, single.scores, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lm_padding_of_very_different_lengths_changes_nothing(tmp_path: Path, lm: Backbone) -> None:
    """Prompts with inputs of 0 to 30 words in one batch: lots of right padding."""
    rng = np.random.default_rng(5)
    rows = reverse_rows(16, seed=303)
    for row in rows:
        row["input"] = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 31))))
    path = write_alpaca(tmp_path / "mixed.jsonl", rows)
    results = []
    for batch_size in (16, 1):
        with open_dataset(path) as ds:
            results.append(
                score(ds, lm, DLCParams(batch_size=batch_size, max_length=LM_MAX_LENGTH))
            )
    np.testing.assert_allclose(results[0].scores, results[1].scores, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_minilm_features_do_not_depend_on_the_batch_size(
    topic_data: tuple[Path, np.ndarray], minilm: Backbone
) -> None:
    """Mean-pooled features of padded batches of 16 equal those of one text at a time."""
    with open_dataset(topic_data[0]) as ds:
        tok = tokenize_texts(ds, minilm.tokenizer, max_length=64)
    n = len(tok)
    assert len(set(tok.lengths.tolist())) > 3  # batches really are padded
    batched = np.empty((n, 384), dtype=np.float32)
    single = np.empty_like(batched)
    for lo in range(0, n, 16):
        idx = tok.order[lo : lo + 16]
        batched[idx] = minilm.features(tok.batch(idx, minilm.device)).numpy()
    for i in range(n):
        single[i] = minilm.features(tok.batch(np.array([i]), minilm.device)).numpy()
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_minilm_scores_do_not_depend_on_the_batch_size(tmp_path: Path, minilm: Backbone) -> None:
    rows, _ = text_rows(per_topic=10, flips=3, seed=4)
    path = write_jsonl(tmp_path / "topics.jsonl", rows)
    results = []
    for batch_size in (16, 1):
        with open_dataset(path) as ds:
            results.append(
                score(ds, minilm, DLCParams(levels=2, max_length=64, batch_size=batch_size))
            )
    np.testing.assert_allclose(results[0].scores, results[1].scores, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Truncation


@pytest.mark.slow
def test_responses_cut_away_by_a_long_prompt_are_reported(tmp_path: Path, lm: Backbone) -> None:
    rng = np.random.default_rng(7)
    rows = reverse_rows(12, seed=404)
    long = np.zeros(len(rows), dtype=bool)
    long[[1, 4, 5, 10]] = True
    for row, is_long in zip(rows, long, strict=True):
        if is_long:
            row["input"] = " ".join(rng.choice(WORDS, size=40))
    path = write_alpaca(tmp_path / "long.jsonl", rows)
    response_tokens = np.array([len(r["output"].split()) + 1 for r in rows])
    ids = [f"s{i}" for i in range(len(rows))]

    with open_dataset(path) as ds:
        right = score(ds, lm, DLCParams(levels=2, max_length=48, truncation="right"))
    assert right.tokens is not None
    assert right.unscored == [i for i, is_long in zip(ids, long, strict=True) if is_long]
    assert np.isnan(right.scores[long]).all()
    assert np.isfinite(right.scores[~long]).all()
    assert (right.tokens[long] == 0).all()
    assert right.tokens[~long].tolist() == response_tokens[~long].tolist()

    with open_dataset(path) as ds:
        kept = score(ds, lm, DLCParams(levels=2, max_length=48, truncation="prompt"))
    assert kept.tokens is not None and kept.unscored == []
    assert np.isfinite(kept.scores).all()
    assert kept.tokens.tolist() == response_tokens.tolist()
    # Short samples are not truncated at all, so their scores do not change.
    np.testing.assert_allclose(kept.scores[~long], right.scores[~long], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Weights restored


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_lm_weights_are_restored_exactly(tmp_path: Path, lm_dir: Path, scope: str) -> None:
    bb = load_backbone(str(lm_dir))
    before = state_copy(bb.model)
    path = write_alpaca(tmp_path / "few.jsonl", reverse_rows(6, seed=505))
    with open_dataset(path) as ds:
        r = score(ds, bb, DLCParams(levels=3, scope=scope, max_length=LM_MAX_LENGTH))
    assert np.isfinite(r.scores).all()
    assert r.mask_fractions[-1] == pytest.approx(0.488, abs=1e-2)
    assert_same_state(bb.model, before)


@pytest.mark.slow
def test_minilm_weights_are_restored_exactly(tmp_path: Path, minilm: Backbone) -> None:
    rows, _ = text_rows(per_topic=3, flips=0, seed=1)
    path = write_jsonl(tmp_path / "few.jsonl", rows)
    before = state_copy(minilm.model)
    with open_dataset(path) as ds:
        score(ds, minilm, DLCParams(levels=4, max_length=32))
    assert_same_state(minilm.model, before)


# --------------------------------------------------------------------------------------------
# Per-layer masks (fast: no model)


def linear_stack(seed: int = 0) -> nn.Sequential:
    """Linear layers of awkward sizes, so each step's rounding differs per layer."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Linear(13, 29), nn.Linear(29, 5))


def linear_modules(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_layer_scope_masks_the_same_share_of_every_tensor() -> None:
    model = linear_stack()
    tensors = [m.weight.data for m in linear_modules(model)]
    masker = WeightMasker(tensors)
    levels, step = 5, 0.2
    plan = MaskPlan(masker, levels, "geometric", scope="layer", step=step)
    for j in range(1, levels + 1):
        masker.zero(plan.chunk(j))
        expected = 1 - (1 - step) ** j
        for t in tensors:
            # Rounding to whole entries: at most half an entry per step.
            share = float((t == 0).float().mean())
            assert abs(share - expected) <= 0.5 * j / t.numel() + 1e-9
            assert (
                int((t == 0).sum()) == mask_counts(t.numel(), levels, "geometric", step=step)[j - 1]
            )
        assert plan.masked_fraction(j) == pytest.approx(
            sum(int((t == 0).sum()) for t in tensors) / masker.total
        )
    masker.restore()
    assert all(bool((t != 0).all()) for t in tensors)


def test_layer_scope_l1_equals_repeated_l1_unstructured() -> None:
    model = linear_stack()
    reference = copy.deepcopy(model)
    masker = WeightMasker([m.weight.data for m in linear_modules(model)])
    levels = 6
    plan = MaskPlan(masker, levels, "geometric", masking="l1", scope="layer", step=0.2)
    for j in range(1, levels + 1):
        masker.zero(plan.chunk(j))
        for ours, ref in zip(linear_modules(model), linear_modules(reference), strict=True):
            prune.l1_unstructured(ref, "weight", amount=0.2)
            assert torch.equal(ours.weight.data == 0, ref.weight_mask == 0), f"level {j}"
            assert torch.equal(ours.weight.data, ref.weight.data)


def test_global_and_layer_scope_differ_on_unequal_layers() -> None:
    """A layer of large weights keeps them all under global l1 masking, but not per layer."""
    model = linear_stack()
    with torch.no_grad():
        linear_modules(model)[1].weight.mul_(1e4)
    tensors = [m.weight.data for m in linear_modules(model)]
    masker = WeightMasker(tensors)
    for scope, big_layer_masked in (("global", False), ("layer", True)):
        plan = MaskPlan(masker, 1, "geometric", scope=scope, step=0.2)
        masker.zero(plan.chunk(1))
        assert bool((tensors[1] == 0).any()) is big_layer_masked, scope
        masker.restore()


# --------------------------------------------------------------------------------------------
# Other instruction formats


@pytest.mark.slow
def test_sharegpt_scores_its_first_human_gpt_pair(tmp_path: Path, lm: Backbone) -> None:
    rows = reverse_rows(8, seed=606)
    convs = [
        {
            "id": f"s{i}",
            "conversations": [
                {"from": "system", "value": "You reverse words."},
                {"from": "human", "value": r["instruction"]},
                {"from": "gpt", "value": r["output"]},
                {"from": "human", "value": "again please"},
                {"from": "gpt", "value": "no"},
            ],
        }
        for i, r in enumerate(rows)
    ]
    sharegpt = write_jsonl(tmp_path / "chat.jsonl", convs)
    alpaca = write_alpaca(tmp_path / "same.jsonl", rows)
    with open_dataset(sharegpt) as ds:
        assert ds.format == "sharegpt"
        got = score(ds, lm, DLCParams(max_length=LM_MAX_LENGTH))
    with open_dataset(alpaca) as ds:
        want = score(ds, lm, DLCParams(max_length=LM_MAX_LENGTH))
    assert got.scores.shape == (8,) and np.isfinite(got.scores).all()
    assert got.ids == [f"s{i}" for i in range(8)]
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)


@pytest.mark.slow
def test_dolly_scores_with_its_context_as_input(tmp_path: Path, lm: Backbone) -> None:
    rows = reverse_rows(8, seed=707)
    rng = np.random.default_rng(8)
    for row in rows[::2]:
        row["input"] = " ".join(rng.choice(WORDS, size=4))
    dolly_rows = [
        {
            "instruction": r["instruction"],
            "context": r["input"],
            "response": r["output"],
            "category": "reverse",
        }
        for r in rows
    ]
    dolly = write_jsonl(tmp_path / "dolly.jsonl", dolly_rows)
    alpaca = write_alpaca(tmp_path / "same.jsonl", rows)
    with open_dataset(dolly) as ds:
        assert ds.format == "dolly"
        got = score(ds, lm, DLCParams(max_length=LM_MAX_LENGTH))
    with open_dataset(alpaca) as ds:
        want = score(ds, lm, DLCParams(max_length=LM_MAX_LENGTH))
    assert got.scores.shape == (8,) and np.isfinite(got.scores).all()
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Wrong combinations of model and data


@pytest.mark.slow
def test_causal_lm_refuses_text_data(tmp_path: Path, lm: Backbone) -> None:
    rows, _ = text_rows(per_topic=2, flips=0, seed=2)
    path = write_jsonl(tmp_path / "texts.jsonl", rows)
    with open_dataset(path) as ds, pytest.raises(ParameterError, match="instruction"):
        score(ds, lm, DLCParams(levels=1))


@pytest.mark.slow
def test_text_encoder_refuses_instructions(tmp_path: Path, minilm: Backbone) -> None:
    path = write_alpaca(tmp_path / "instr.jsonl", reverse_rows(4, seed=808))
    with open_dataset(path) as ds, pytest.raises(ParameterError, match="instruction"):
        score(ds, minilm, DLCParams(levels=1))


@pytest.mark.slow
def test_image_model_refuses_text_data(tmp_path: Path) -> None:
    rows, _ = text_rows(per_topic=2, flips=0, seed=3)
    path = write_jsonl(tmp_path / "texts.jsonl", rows)
    bb = load_backbone("efficientnet_lite0")
    with open_dataset(path) as ds, pytest.raises(ParameterError, match="text"):
        score(ds, bb, DLCParams(levels=1))
