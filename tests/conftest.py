"""Shared fixtures: small random checkpoints (written by edgeport or by transformers) and a small tokenizer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

# Text used to train the test tokenizer: mixed English, CJK, digits, code, emoji and chat markup.
TOKENIZER_TEXT = [
    "The quick brown fox jumps over the lazy dog. It's 2026-11-25 and we've got 1234 tokens.",
    "def add(a, b):\n    return a + b  # sum\n\nprint(add(17, 23))",
    "东京是日本的首都。我们在这里学习模型。한국어 문장도 있습니다。カタカナとひらがな。",
    'Emoji test: 🙂🚀✨ and punctuation!? {"name": "calc", "arguments": {"expr": "3*7"}}',
    "Convert 12.5 km to miles; the answer is 7.767 miles. What's the date 30 days after 2024-02-01?",
] * 20

# A small random Youtu config in deliberately odd dimensions (v_head_dim != qk_nope_head_dim, no multiples of 32).
ODD_CONFIG = dict(
    hidden_size=72,
    intermediate_size=136,
    num_hidden_layers=2,
    num_attention_heads=3,
    num_key_value_heads=3,
    q_lora_rank=40,
    kv_lora_rank=24,
    qk_nope_head_dim=12,
    qk_rope_head_dim=8,
    v_head_dim=20,
    max_position_embeddings=512,
    rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
)
# A small random config whose matrix dimensions are all multiples of 32 (every tensor quantizes in blocks).
BLOCK_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    q_lora_rank=64,
    kv_lora_rank=64,
    qk_nope_head_dim=32,
    qk_rope_head_dim=16,
    v_head_dim=32,
    max_position_embeddings=512,
    rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
)
TEST_VOCAB = 512


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE with Youtu's pre-tokenizer, special tokens and chat template, vocab TEST_VOCAB."""
    from edgeport.tokenizer import save_tokenizer, train_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_tokenizer(TOKENIZER_TEXT, vocab_size=TEST_VOCAB), folder)
    return folder


def _hf_checkpoint(folder: Path, tokenizer_dir: Path | None, seed: int, **cfg_kw) -> Path:
    """A random checkpoint written by transformers.YoutuForCausalLM itself (the independent reference)."""
    from transformers import YoutuConfig, YoutuForCausalLM

    from edgeport.checkpoint import copy_tokenizer

    torch.manual_seed(seed)
    kw = {**ODD_CONFIG, "vocab_size": TEST_VOCAB, **cfg_kw}
    if tokenizer_dir is not None:
        from edgeport.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        kw.setdefault("bos_token_id", tok.bos_id)
        kw.setdefault("eos_token_id", tok.eos_id)
    else:
        kw.setdefault("bos_token_id", None)
        kw.setdefault("eos_token_id", None)
    model = YoutuForCausalLM(YoutuConfig(**kw)).eval()
    with torch.no_grad():  # HF init is tiny; widen it so logits are not flat and argmax is well defined
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.08 if "embed" not in name else 0.5)
            elif "norm" in name:
                p.uniform_(0.8, 1.2)
    model.save_pretrained(folder)
    if tokenizer_dir is not None:
        copy_tokenizer(tokenizer_dir, folder)
    return folder


@pytest.fixture
def hf_checkpoint(tmp_path: Path, tokenizer_dir: Path) -> Callable[..., Path]:
    """Factory: hf_checkpoint(seed=0, **config_overrides) -> folder written by transformers, with tokenizer."""
    counter = iter(range(1000))

    def make(seed: int = 0, **cfg_kw) -> Path:
        return _hf_checkpoint(tmp_path / f"hf{next(counter)}", tokenizer_dir, seed, **cfg_kw)

    return make


@pytest.fixture
def block_checkpoint(hf_checkpoint: Callable[..., Path]) -> Path:
    """A transformers-written checkpoint whose dimensions are all multiples of 32 (fully block-quantizable)."""
    return hf_checkpoint(seed=1, **BLOCK_CONFIG)
