"""Write a random-weight checkpoint in the REAL Youtu-LLM-2B shape (1.96 B parameters, bf16, sharded safetensors,
128256-token byte-level BPE tokenizer) for the export benchmarks, holding at most one chunk of one tensor in memory.

    python benchmarks/make_youtu_2b.py /tmp/youtu-2b        (~3.9 GB on disk)

Weights: N(0, initializer_range) (embedding 2x), norms 1, written straight into the safetensors layout (header
first, then each tensor in row chunks), so peak memory is a few hundred MB whatever the model size.
Tokenizer: edgeport's youtu BPE trained on a small corpus, then extended with synthesized merges (pairs of
existing tokens) to exactly 128256 tokens, chat control tokens last (bos = 128244).
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import torch
from tqdm import tqdm

from edgeport import chat
from edgeport.checkpoint import expected_shapes
from edgeport.io import atomic_dir
from edgeport.model import preset

SHARD_BYTES = 2 * 1024**3
CHUNK = 8 * 2**20  # elements generated at a time


def corpus() -> list[str]:
    from pydoc_data.topics import topics

    extra = [
        "东京是日本的首都。我们在这里学习模型。한국어 문장도 있습니다。カタカナとひらがな。🙂🚀✨ 1234567890"
    ]
    return list(topics.values()) + extra * 50


def make_tokenizer(vocab_size: int):
    """A trained youtu BPE grown to `vocab_size` with synthesized merges; specials keep the last ids."""
    import tokenizers
    from tokenizers import AddedToken

    from edgeport.tokenizer import train_tokenizer

    n_special = len(chat.SPECIAL_TOKENS)
    base = train_tokenizer(corpus(), vocab_size=8192)
    state = json.loads(base.to_str())
    state["added_tokens"] = []
    vocab: dict[str, int] = {t: i for t, i in state["model"]["vocab"].items() if i < 8192 - n_special}
    merges = [m if isinstance(m, list) else m.split(" ") for m in state["model"]["merges"]]
    pieces = sorted(vocab, key=vocab.get)
    target = vocab_size - n_special
    i = 0
    while len(vocab) < target:  # a + b for existing tokens a, b: always a valid BPE merge
        a, b = pieces[i % len(pieces)], pieces[(i // len(pieces)) % len(pieces)]
        i += 1
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    state["model"]["vocab"], state["model"]["merges"] = vocab, merges
    tok = tokenizers.Tokenizer.from_str(json.dumps(state))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in chat.SPECIAL_TOKENS])
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size
    return tok


def write_shards(folder: Path, shapes: dict[str, tuple[int, ...]], std: float, seed: int) -> None:
    """Sharded bf16 safetensors + index, generated and written chunk by chunk."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        n = 2 * int(torch.tensor(shape).prod())
        if shards[-1] and size + n > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    g = torch.Generator().manual_seed(seed)
    weight_map: dict[str, str] = {}
    total = sum(2 * int(torch.tensor(s).prod()) for s in shapes.values())
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="weights")
    for k, names in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name in names:
            n = 2 * int(torch.tensor(shapes[name]).prod())
            header[name] = {"dtype": "BF16", "shape": list(shapes[name]), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / fname, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for name in names:
                numel = int(torch.tensor(shapes[name]).prod())
                s = 2 * std if name == "model.embed_tokens.weight" else std
                for a in range(0, numel, CHUNK):
                    m = min(CHUNK, numel - a)
                    if len(shapes[name]) == 1:
                        x = torch.ones(m, dtype=torch.bfloat16)
                    else:
                        x = (torch.randn(m, generator=g) * s).to(torch.bfloat16)
                    f.write(x.view(torch.int16).numpy().tobytes())
                    bar.update(2 * m)
    bar.close()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from edgeport.tokenizer import save_tokenizer

    cfg = preset("youtu-2b")
    tok = make_tokenizer(cfg.vocab_size)
    cfg.bos_token_id = tok.token_to_id(chat.BOS)
    cfg.eos_token_id = tok.token_to_id(chat.EOS)
    cfg.pad_token_id = cfg.eos_token_id
    shapes = expected_shapes(cfg)
    with atomic_dir(args.out) as tmp:
        (tmp / "config.json").write_text(json.dumps({**cfg.to_dict(), "dtype": "bfloat16"}, indent=2) + "\n")
        save_tokenizer(tok, tmp)
        write_shards(tmp, shapes, cfg.initializer_range, args.seed)
    n = sum(int(torch.tensor(s).prod()) for s in shapes.values())
    print(f"wrote {args.out}: {n:,} parameters, vocab {tok.get_vocab_size(with_added_tokens=True)}")


if __name__ == "__main__":
    main()
