"""Byte-level BPE with Youtu's pre-tokenizer, trained with HF `tokenizers`, saved as a transformers tokenizer folder.

The pre-tokenizer reproduces how llama.cpp splits text for `tokenizer.ggml.pre = "youtu"` (llama-vocab.cpp,
LLAMA_VOCAB_PRE_TYPE_YOUTU), so the GGUF tokenizes token-for-token like transformers:
  1. runs of Hangul, CJK punctuation, Bopomofo and Han/kana are isolated;
  2. the o200k-style word regex, with every digit its own pre-token. llama.cpp runs this regex on a
     "category-collapsed" copy of the text in which \\p{Lu}, \\p{Ll}, \\p{Lt}, \\p{Lm} and \\p{Lo} all mean "any
     letter" (unicode.cpp, k_ucat_enum), so its upper/lower-case parts degenerate to [\\p{L}\\p{M}]+ and camelCase
     words stay one pre-token. WORD_REGEX is written in that effective form so both runtimes agree.
BPE uses ignore_merges (a pre-token that is itself in the vocab is emitted whole), like llama.cpp's youtu vocab.
The chat control tokens (chat.SPECIAL_TOKENS) take the last ids, so bos = vocab_size - len(SPECIAL_TOKENS); the
text markers among them (chat.TEXT_MARKERS: <think>, <tool_call>, <tool_response> and their closing forms) are
added but not special, so decoded text keeps them and the GGUF marks them USER_DEFINED.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers

from edgeport import chat
from edgeport.errors import EdgeportError
from edgeport.io import atomic_file

# Regex 1 of llama.cpp's youtu pre-tokenizer, character for character (written with escapes for readability).
CJK_REGEX = (
    "[\uac00-\ud7a3\u3131-\u318e]+"  # Hangul syllables and jamo
    "|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+"  # CJK punctuation
    "|[\u3105-\u312f]+"  # Bopomofo
    "|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"  # Han, hiragana, katakana
)
# Regex 2 as llama.cpp effectively applies it (see the module docstring); the source form is
# [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:contractions)?|<same, cased>|...
_CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
WORD_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+"
    + _CONTRACTIONS
    + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
RESERVED = "<|reserved_special_token_{}|>"  # fills ids between a small trained vocab and the chat tokens


def youtu_pre_tokenizer(split_words: bool = False) -> pre_tokenizers.PreTokenizer:
    """Youtu's pre-tokenizer; split_words (training only, see train_tokenizer) also isolates every letter run."""
    words = [pre_tokenizers.Split(Regex(r"[\p{L}\p{M}]+"), behavior="isolated")] if split_words else []
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_REGEX), behavior="isolated"),
            pre_tokenizers.Split(Regex(WORD_REGEX), behavior="isolated"),
            *words,
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def _without_specials(texts: Iterable[str]) -> Iterator[str]:
    """Training text with the control tokens cut out: they are whole tokens at encode time, never merged."""
    pattern = re.compile("|".join(re.escape(s) for s in chat.SPECIAL_TOKENS))
    for text in texts:
        yield from (piece for piece in pattern.split(text) if piece)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, show_progress: bool = True, split_words: bool = False
) -> tokenizers.Tokenizer:
    """Train a byte-level BPE of exactly `vocab_size` tokens; the chat control tokens get the last ids.

    split_words: learn no merge of a word with the space or punctuation before it (" packing", "/packing" and
    "_packing" all end in the same ids), so a name the user types is the same ids in a path or a tool result
    and copying it is copying ids. Only the training split differs: the saved pre-tokenizer is Youtu's (the
    GGUF's "youtu" pre-type), and as no merge joins the prefix to the word, BPE leaves them apart at encode time.
    Costs ~12% more tokens per episode (the ~750-token all-tools block becomes ~835).
    """
    n_special = len(chat.SPECIAL_TOKENS)
    if vocab_size < 256 + n_special:
        raise EdgeportError(
            f"vocab_size {vocab_size} too small: need at least {256 + n_special} (bytes + specials)"
        )
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = youtu_pre_tokenizer(split_words)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(_without_specials(texts), trainer=trainer)
    tok.pre_tokenizer = youtu_pre_tokenizer()  # what is saved and what llama.cpp applies
    # The trainer builds a fresh BPE model; make sure ignore_merges survived it.
    state = json.loads(tok.to_str())
    if not state["model"].get("ignore_merges"):
        state["model"]["ignore_merges"] = True
        tok = tokenizers.Tokenizer.from_str(json.dumps(state))
    n_fill = vocab_size - n_special - tok.get_vocab_size(with_added_tokens=True)
    fill = [RESERVED.format(i) for i in range(n_fill)]  # small corpora cannot reach the requested size
    for s in fill + chat.SPECIAL_TOKENS:  # one at a time: ids in this order, each with its own special flag
        if s in chat.TEXT_MARKERS:
            tok.add_tokens([AddedToken(s, special=False, normalized=False)])
        else:
            tok.add_special_tokens([AddedToken(s, special=True, normalized=False)])
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size
    return tok


def save_tokenizer(tok: tokenizers.Tokenizer, folder: str | Path, model_max_length: int = 131072) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder` (other files kept)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in (chat.BOS, chat.EOS):
        if tok.token_to_id(s) is None:
            raise EdgeportError(f"tokenizer has no {s} token", folder)
    added = {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(tok.get_added_tokens_decoder().items())
    }
    config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": chat.BOS,
        "chat_template": chat.CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": chat.EOS,
        "model_max_length": model_max_length,
        "pad_token": chat.EOS,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    special_map = {
        k: {"content": v, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
        for k, v in (("bos_token", chat.BOS), ("eos_token", chat.EOS), ("pad_token", chat.EOS))
    }
    with atomic_file(folder / "tokenizer.json", "w") as f:
        f.write(tok.to_str(pretty=True))
    with atomic_file(folder / "tokenizer_config.json", "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    with atomic_file(folder / "special_tokens_map.json", "w") as f:
        json.dump(special_map, f, indent=2, ensure_ascii=False)


class Tokenizer:
    """A thin wrapper over tokenizers.Tokenizer with the ids and chat helpers the rest of edgeport needs."""

    def __init__(self, hf: tokenizers.Tokenizer, folder: str | Path) -> None:
        self.hf = hf
        self.folder = Path(folder)
        self.special_ids: dict[str, int] = {
            s: i for s in chat.SPECIAL_TOKENS if (i := hf.token_to_id(s)) is not None
        }
        for s in (chat.BOS, chat.EOS):
            if s not in self.special_ids:
                raise EdgeportError(f"tokenizer has no {s} token", self.folder / "tokenizer.json")
        self.bos_id = self.special_ids[chat.BOS]
        self.eos_id = self.special_ids[chat.EOS]
        self.vocab_size = hf.get_vocab_size(with_added_tokens=True)
        self._literal: tokenizers.Tokenizer | None = None  # same tokenizer, special tokens encoded as text

    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        """Token ids of `text`; never adds BOS. parse_special=False encodes control-token strings as plain text;
        the text markers (chat.TEXT_MARKERS) stay single ids either way, as llama.cpp treats USER_DEFINED tokens."""
        if parse_special:
            return self.hf.encode(text, add_special_tokens=False).ids
        if self._literal is None:
            self._literal = tokenizers.Tokenizer.from_str(self.hf.to_str())
            self._literal.encode_special_tokens = True
        return self._literal.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)

    def apply_chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        add_generation_prompt: bool = False,
        enable_thinking: bool | None = None,
        forced_thinking: bool = False,
    ) -> list[int]:
        """Token ids of chat.render(...) (the text already starts with BOS)."""
        return self.encode(
            chat.render(messages, tools, add_generation_prompt, enable_thinking, forced_thinking)
        )

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.folder)!r}, vocab_size={self.vocab_size})"


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Load `folder`/tokenizer.json; a missing or unreadable file is an EdgeportError naming it."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise EdgeportError(
            "missing tokenizer.json (train one with edgeport's tokenizer or copy the model's)", path
        )
    try:
        hf = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exception subclasses for bad JSON or schema
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgeportError(f"invalid tokenizer.json ({msg})", path) from None
    return Tokenizer(hf, folder)
