"""A tiny causal LM trained in the test on a known rule: respond with the instruction reversed.

Everything is built locally: a word-level tokenizer made from the task's own text and a 2-layer
Llama trained for a few seconds on the CPU. Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from dlcprune.core.params import format_prompt

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
# 40 short words; every one is a single token under the Whitespace pre-tokenizer.
_WORD_LIST = (
    "apple river stone cloud tiger lemon piano silver orange rocket "
    "garden window candle forest bridge castle dragon falcon harbor island "
    "jungle kettle ladder magnet needle ocean pencil quartz rabbit saddle "
    "tunnel violin walnut yellow zebra anchor basket cactus dolphin engine"
)
WORDS = tuple(_WORD_LIST.split())
assert len(WORDS) == len(set(WORDS)) == 40


def reverse_rows(n: int, seed: int, follow_rule: bool = True) -> list[dict[str, str]]:
    """``n`` Alpaca rows: 3 to 6 random words; the output is them reversed (``follow_rule``) or
    as many random words (not the rule)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
        response = words[::-1] if follow_rule else [rng.choice(WORDS) for _ in words]
        rows.append({"instruction": " ".join(words), "input": "", "output": " ".join(response)})
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_alpaca(path: Path, rows: Iterable[dict[str, str]]) -> Path:
    """Alpaca JSONL (``instruction``, ``input``, ``output``) with ids ``s0``, ``s1``, ..."""
    return write_jsonl(path, ({"id": f"s{i}", **r} for i, r in enumerate(rows)))


def build_word_tokenizer(words: Iterable[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` plus the Alpaca prompts' words;
    ``add_special_tokens=True`` prepends <bos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        format_prompt(None, " ".join(words), ""),
        format_prompt(None, " ".join(words), " ".join(words)),
    ]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
    )


def tiny_llama(
    tokenizer: Any,
    seed: int,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    intermediate: int = 128,
) -> torch.nn.Module:
    """A seeded, untrained ``LlamaForCausalLM`` sized for ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def encode_batch(tokenizer: Any, rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the response
    and its <eos>), tokenized as ``text.tokenize_instructions`` does."""
    prompts = [format_prompt(None, r["instruction"], r["input"]) for r in rows]
    fulls = [p + r["output"] + tokenizer.eos_token for p, r in zip(prompts, rows, strict=True)]
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    f_ids = tokenizer(fulls, add_special_tokens=True)["input_ids"]
    width = max(len(f) for f in f_ids)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (p, f) in enumerate(zip(p_ids, f_ids, strict=True)):
        ids[i, : len(f)] = torch.tensor(f)
        attn[i, : len(f)] = 1
        labels[i, len(p) : len(f)] = torch.tensor(f[len(p) :])
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def build_reverse_task_lm(
    out_dir: Path, seed: int = 0, steps: int = 400, batch_size: int = 32, lr: float = 3e-3
) -> Path:
    """Train a tiny Llama to answer each instruction with its words reversed; save model and
    tokenizer to ``out_dir`` (a Hugging Face directory) and return it."""
    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_llama(tokenizer, seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        batch = encode_batch(
            tokenizer, reverse_rows(batch_size, seed=2**40 + 100_000 * seed + step)
        )
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
