"""Language data: transformer encoders for text classification, causal LMs for instructions.

- Text classification: features are the attention-mask-weighted mean of an encoder's last hidden
  states (B, H) float32 (the sentence-transformers pooling); the DLC loss is the image one (the
  prototype cross-entropy). Masks cover the Linear weights except any head or pooler.
- Instructions: the loss of a sample is the mean negative log-likelihood of its response tokens
  given the prompt (prompt tokens carry no loss); masks cover the Linear weights except the output
  head (``lm_head``), globally or per layer.

Every sample is tokenized once (ragged int32 arrays) and reused at every mask level. Batches are
formed from samples of similar length (sorted by length), right-padded with an attention mask.
Nothing is downloaded: models load from local directories only (``local_files_only``), and remote
code is never trusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcprune.core.errors import DatasetError, ModelError, ParameterError
from dlcprune.core.params import format_prompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers in service logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


_HEAD_NAMES = ("lm_head", "classifier", "head", "pooler", "score", "qa_outputs")


def _is_linear(module: nn.Module) -> bool:
    # transformers' GPT-2 family uses Conv1D, a Linear with its weight transposed.
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_weights(model: nn.Module) -> list[str]:
    """Names of the Linear (and Conv1D) weights, heads and poolers excluded."""
    names = []
    for mod_name, module in model.named_modules():
        if not _is_linear(module):
            continue
        parts = mod_name.split(".")
        if any(p in _HEAD_NAMES for p in parts):
            continue
        names.append(f"{mod_name}.weight")
    if not names:
        raise ModelError("the model has no Linear weights to mask")
    return names


def hf_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise ModelError("not a Hugging Face model directory (no config.json)", path=str(path))
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read config.json: {exc}", path=str(path)) from exc


def is_causal_lm(config: dict[str, Any]) -> bool:
    archs = config.get("architectures") or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or bool(
        config.get("is_decoder")
    )


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer: {exc}", path=str(path)) from exc


def load_encoder(path: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    from transformers import AutoModel

    _quiet_transformers()
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load the encoder: {exc}", path=str(path)) from exc
    return model.eval(), load_tokenizer(path)


def load_causal_lm(
    path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=dtype or torch.float32
        )
    except Exception as exc:
        raise ModelError(f"cannot load the causal language model: {exc}", path=str(path)) from exc
    return model.eval(), load_tokenizer(path)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) hidden states, (B, T) attention mask -> (B, H) float32 mean over real tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return ((hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)).float()


def encoder_features(model: nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    def fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return mean_pool(out.last_hidden_state, batch["attention_mask"])

    return fn


def response_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of each sample's response tokens: (B,) float32, NaN for a
    sample with no response token left.

    ``batch["loss_mask"]`` (B, T) bool marks the positions whose token is part of the response;
    the token at position t is predicted from positions < t.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = torch.where(mask, nll, torch.zeros_like(nll))
    counts = mask.sum(dim=1)
    out = nll.sum(dim=1) / counts.clamp_min(1)
    return torch.where(counts > 0, out, torch.full_like(out, float("nan")))


@dataclass
class Tokenized:
    """Ragged token ids of N samples. ``tokens[offsets[i]:offsets[i+1]]`` is sample i's sequence
    (int32); ``prompt_len[i]`` of them are prompt (no loss); ``response_tokens[i]`` counts the
    response tokens kept after truncation (instructions only)."""

    tokens: np.ndarray
    offsets: np.ndarray
    pad_id: int
    prompt_len: np.ndarray | None = None
    response_tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def order(self) -> np.ndarray:
        """Processing order: by length, so a batch pads little (stable: ties keep index order)."""
        return np.argsort(self.lengths, kind="stable")

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 1
        ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
        attn = np.zeros((len(idx), width), dtype=np.int64)
        loss = np.zeros((len(idx), width), dtype=bool)
        for row, i in enumerate(idx):
            seq = self.tokens[self.offsets[i] : self.offsets[i + 1]]
            ids[row, : len(seq)] = seq
            attn[row, : len(seq)] = 1
            if self.prompt_len is not None:
                loss[row, int(self.prompt_len[i]) : len(seq)] = True
        out = {
            "input_ids": torch.from_numpy(ids).to(device),
            "attention_mask": torch.from_numpy(attn).to(device),
        }
        if self.prompt_len is not None:
            out["loss_mask"] = torch.from_numpy(loss).to(device)
        return out

    def close(self) -> None:
        pass


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _ragged(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    tokens = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return tokens, offsets


def tokenize_texts(
    dataset: Any,
    tokenizer: Any,
    max_length: int,
    progress: Callable[[int, int], None] | None = None,
) -> Tokenized:
    """Text classification samples -> token ids (special tokens added, truncated at
    ``max_length``)."""
    if dataset.kind != "text":
        raise ParameterError(f"a text encoder needs text data, not {dataset.kind}")
    seqs: list[list[int]] = []
    chunk: list[str] = []
    n = len(dataset)

    def flush() -> None:
        enc = tokenizer(chunk, truncation=True, max_length=max_length, add_special_tokens=True)
        seqs.extend(list(map(list, enc["input_ids"])))
        chunk.clear()
        if progress is not None:
            progress(len(seqs), n)

    for _, text in dataset.iter_payloads():
        chunk.append(text)
        if len(chunk) == 512:
            flush()
    if chunk:
        flush()
    tokens, offsets = _ragged(seqs)
    if np.any(np.diff(offsets) == 0):
        raise DatasetError("a text tokenized to nothing", path=str(dataset.path))
    return Tokenized(tokens, offsets, _pad_id(tokenizer))


def tokenize_instructions(
    dataset: Any,
    tokenizer: Any,
    max_length: int,
    template: str | None = None,
    truncation: str = "right",
    progress: Callable[[int, int], None] | None = None,
) -> Tokenized:
    """Instructions -> prompt + response token ids.

    The prompt is the template filled with the instruction and input; the response is followed by
    the tokenizer's end-of-sequence token. Prompt and full text are tokenized separately and the
    first ``len(prompt)`` tokens of the full text are the prompt (as Alpaca's training code does).
    ``truncation="right"`` cuts the sequence at ``max_length`` (a long prompt can cut the response
    away entirely: that sample gets 0 response tokens and no score); ``"prompt"`` drops prompt
    tokens from the left first (keeping a leading BOS), then the response's end.
    """
    if dataset.kind != "instruction":
        raise ParameterError(f"a causal language model needs instruction data, not {dataset.kind}")
    eos = getattr(tokenizer, "eos_token", None) or ""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    seqs: list[list[int]] = []
    prompt_lens: list[int] = []
    n = len(dataset)
    for i, sample in dataset.iter_payloads():
        prompt = format_prompt(template, sample.instruction, sample.input)
        p_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        full = list(tokenizer(prompt + sample.response + eos, add_special_tokens=True)["input_ids"])
        p_len = min(len(p_ids), len(full))
        if len(full) > max_length:
            if truncation == "prompt":
                keep_bos = 1 if (bos_id is not None and full and full[0] == bos_id) else 0
                # At least one token before the response: the first response token is predicted
                # from it (position 0 is never scored).
                response = full[p_len:][: max_length - 1]
                room = max_length - keep_bos
                prompt_part = full[keep_bos:p_len][
                    max(0, p_len - keep_bos - (room - len(response))) :
                ]
                full = full[:keep_bos] + prompt_part + response
                p_len = keep_bos + len(prompt_part)
            else:
                full = full[:max_length]
                p_len = min(p_len, max_length)
        seqs.append(full)
        prompt_lens.append(p_len)
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1, n)
    tokens, offsets = _ragged(seqs)
    prompt_len = np.asarray(prompt_lens, dtype=np.int32)
    # Position 0 has no context, so it is never scored, even when it holds a response token.
    response = np.maximum(np.diff(offsets) - np.maximum(prompt_len, 1), 0).astype(np.int32)
    return Tokenized(tokens, offsets, _pad_id(tokenizer), prompt_len, response)
