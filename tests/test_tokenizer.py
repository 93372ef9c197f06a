"""The byte-level BPE tokenizer: Youtu pre-tokenization, exact vocab size, special tokens, transformers parity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgeport import chat
from edgeport.errors import EdgeportError
from edgeport.tokenizer import Tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TEST_VOCAB, TOKENIZER_TEXT  # noqa: E402

MIXED = [
    "The quick brown fox, it's 2026-11-25; we've got 1234 tokens.",
    "def parseJSON(httpClient, maxRetries=3):\r\n\treturn httpClient.get('/api/v2?id=42')  # camelCase\n\n",
    "东京是日本的首都。我们在这里！“引号”，顿号、한국어 문장도 있습니다 カタカナとひらがな　ｶﾀｶﾅ ㄅㄆㄇ",
    "Emoji 🙂🚀✨👨‍👩‍👧 and flags 🇯🇵; math ½ ² Ⅻ ١٢٣ 3.14159e-10",
    "Café naïve e\u0301 a\u0308 — Ελληνικά Русский العربية हिन्दी नमस्ते \u00a0\u2003\u2028 end   ",
    '<|User|>Hi<|Assistant|><think>\n\n</think>\n\n<tool_call>{"name": "calc"}</tool_call><|end_of_text|>',
    "",
    " ",
    "\n\n\n",
]


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Tokenizer:
    return load_tokenizer(tokenizer_dir)


def test_vocab_size_exact_and_specials_last(tok: Tokenizer) -> None:
    assert tok.vocab_size == TEST_VOCAB
    n = len(chat.SPECIAL_TOKENS)
    assert [tok.special_ids[s] for s in chat.SPECIAL_TOKENS] == list(range(TEST_VOCAB - n, TEST_VOCAB))
    assert (tok.bos_id, tok.eos_id) == (TEST_VOCAB - n, TEST_VOCAB - n + 1)
    # a corpus too small for the requested size is padded with reserved tokens before the specials
    small = train_tokenizer(["tiny corpus"], vocab_size=384)
    assert small.get_vocab_size(with_added_tokens=True) == 384
    assert small.token_to_id(chat.BOS) == 384 - n and small.token_to_id(chat.TOOL_DESC_END) == 383
    assert small.token_to_id("<|reserved_special_token_0|>") is not None
    with pytest.raises(EdgeportError, match="too small"):
        train_tokenizer(["x"], vocab_size=200)


def test_training_is_deterministic_and_ignores_specials() -> None:
    a = train_tokenizer(TOKENIZER_TEXT, vocab_size=320)
    b = train_tokenizer(iter(TOKENIZER_TEXT), vocab_size=320)
    assert a.to_str() == b.to_str()
    state = json.loads(a.to_str())
    assert state["model"]["type"] == "BPE" and state["model"]["ignore_merges"] is True
    assert state["post_processor"] is None and state["normalizer"] is None  # no BOS added, no normalization
    # control tokens inside the training text are cut out: no merged pieces of them in the learned vocab
    c = train_tokenizer(["<|User|>hi<|Assistant|>ok<|end_of_text|>"] * 50, vocab_size=300)
    assert not [t for t in json.loads(c.to_str())["model"]["vocab"] if "User" in t or "Assistant" in t]


def test_digits_are_single_tokens(tok: Tokenizer) -> None:
    text = "2026 1234567890"  # "2026" and "1234" occur often in the training text, yet never merge
    ids = tok.encode(text)
    assert [tok.decode([i]) for i in ids] == ["2", "0", "2", "6", " ", *"1234567890"]


def pieces(tok: Tokenizer, text: str) -> list[str]:
    """Pre-tokens of `text` as substrings of the original (offsets are in characters)."""
    return [text[a:b] for _, (a, b) in tok.hf.pre_tokenizer.pre_tokenize_str(text)]


def test_pre_tokenization(tok: Tokenizer) -> None:
    assert pieces(tok, "Hello东京。World한국어！ok") == ["Hello", "东京", "。", "World", "한국어", "！", "ok"]
    assert pieces(tok, "ひらがなカタカナ漢字abc") == ["ひらがなカタカナ漢字", "abc"]
    assert pieces(tok, "we'll DON'T 12ab") == ["we'll", " DON'T", " ", "1", "2", "ab"]
    # llama.cpp's youtu regex runs on category-collapsed text: camelCase stays one pre-token
    assert pieces(tok, " parseJSONResponse") == [" parseJSONResponse"]
    assert pieces(tok, "a  +=\n\n  b") == ["a", " ", " +=\n\n", " ", " b"]
    assert pieces(tok, "x</path/\n") == ["x", "</", "path", "/\n"]


def test_special_tokens_are_single_ids(tok: Tokenizer) -> None:
    for s in chat.SPECIAL_TOKENS:
        assert tok.encode(s) == [tok.special_ids[s]]
        assert tok.token_to_id(s) == tok.special_ids[s]
        literal = tok.encode(s, parse_special=False)
        if s in chat.TEXT_MARKERS:  # added, not special: a token in any text (llama.cpp's USER_DEFINED)
            assert literal == [tok.special_ids[s]]
        else:
            assert len(literal) > 1 and tok.decode(literal) == s
    ids = tok.encode("a<|User|>b")
    assert tok.special_ids[chat.USER] in ids and tok.decode(ids, skip_special=True) == "ab"
    # a tool call survives decoding that skips special tokens (what OpenAI-style servers and pipelines do)
    call = chat.format_tool_call("calculate", {"expression": "17 * 23"})
    ids = tok.encode(chat.THINK_START + "\nx\n" + chat.THINK_END + call + chat.EOS)
    assert tok.decode(ids, skip_special=True) == chat.THINK_START + "\nx\n" + chat.THINK_END + call
    assert tok.special_ids[chat.TOOL_CALL_START] in ids and tok.special_ids[chat.TOOL_CALL_END] in ids


@pytest.mark.parametrize("text", MIXED)
def test_roundtrip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, parse_special=False)) == text
    assert all(0 <= i < tok.vocab_size for i in tok.encode(text))
    assert not text or tok.encode(text)[0] != tok.bos_id  # never adds BOS


def test_transformers_loads_it_offline(tokenizer_dir: Path, tok: Tokenizer) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert (hf.bos_token, hf.eos_token, hf.pad_token) == (chat.BOS, chat.EOS, chat.EOS)
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (tok.bos_id, tok.eos_id, tok.eos_id)
    assert len(hf) == tok.vocab_size and hf.model_max_length == 131072
    assert hf.chat_template == chat.CHAT_TEMPLATE
    for text in MIXED:
        ids = hf(text)["input_ids"]
        assert ids == tok.encode(text)
        assert hf.decode(ids) == tok.decode(ids) == text
    assert set(hf.all_special_ids) >= {tok.bos_id, tok.eos_id}
    call = chat.format_tool_call("calculate", {"expression": "17 * 23"})
    assert hf.decode(hf(call + chat.EOS)["input_ids"], skip_special_tokens=True) == call
    assert hf.convert_ids_to_tokens(tok.special_ids[chat.THINK_END]) == chat.THINK_END


def test_save_keeps_other_files_and_load_errors(tmp_path: Path, tokenizer_dir: Path) -> None:
    folder = tmp_path / "ckpt" / "nested"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"keep": true}')
    save_tokenizer(load_tokenizer(tokenizer_dir).hf, folder, model_max_length=512)
    assert (folder / "config.json").read_text() == '{"keep": true}'
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert cfg["model_max_length"] == 512 and cfg["add_bos_token"] is False
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and cfg["chat_template"] == chat.CHAT_TEMPLATE
    flags = {v["content"]: v["special"] for v in cfg["added_tokens_decoder"].values()}
    assert all(flags[s] == (s not in chat.TEXT_MARKERS) for s in chat.SPECIAL_TOKENS)
    fresh = tmp_path / "new" / "dir"
    save_tokenizer(load_tokenizer(tokenizer_dir).hf, fresh)  # creates the folder
    assert load_tokenizer(fresh).encode("hi 123") == load_tokenizer(tokenizer_dir).encode("hi 123")

    with pytest.raises(EdgeportError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "nowhere")
    (folder / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(EdgeportError, match=r"tokenizer\.json.*invalid"):
        load_tokenizer(folder)


def test_split_words_gives_a_word_the_same_ids_after_any_prefix() -> None:
    """split_words: a name keeps its ids after a space, a slash or an underscore (a request -> a path), and the
    saved pre-tokenizer is still Youtu's, so the file means to llama.cpp what it means to transformers."""
    corpus = [
        f"Find {w}.txt and read it. /home/{w}.txt my_{w} the {w}" for w in ("packing", "yoga", "budget")
    ] * 40
    plain = train_tokenizer(corpus, vocab_size=320)
    split = train_tokenizer(corpus, vocab_size=320, split_words=True)
    assert json.loads(split.to_str())["pre_tokenizer"] == json.loads(plain.to_str())["pre_tokenizer"]
    assert plain.encode(" packing").tokens != plain.encode("/packing").tokens[1:]  # without: prefix merged in
    for w in ("packing", "yoga", "budget"):
        ids = split.encode(w).ids
        assert len(ids) == 1  # a whole word of the corpus
        for prefix in (" ", "/", "_"):
            enc = split.encode(prefix + w)
            assert enc.ids[1:] == ids and len(enc.ids) == 2, (prefix, enc.tokens)
    vocab = json.loads(split.to_str())["model"]["vocab"]
    assert not [t for t in vocab if len(t) > 1 and t[0] in "Ġ/_" and t[1].isalpha()]


@pytest.mark.parametrize("split_words", [False, True])
def test_llama_cpp_tokenizes_identically(tmp_path: Path, split_words: bool) -> None:
    """The GGUF vocab (pre-tokenizer "youtu") must give the same ids as tokenizer.json on mixed text, including
    camelCase words, which only stay whole because llama.cpp's category-collapsed regex ignores letter case;
    also for a vocab trained with split_words (no merge joins a word to the character before it)."""
    import random

    import llama_cpp
    from transformers import YoutuConfig, YoutuForCausalLM

    from edgeport.export.gguf import export_gguf

    corpus = [
        *MIXED,
        "parseJSON getHTTPResponse iPhone McDonald's XMLHttpRequest camelCaseWord DON'T we'll",
    ] * 30
    hf_tok = train_tokenizer(corpus, vocab_size=1024, split_words=split_words)
    assert hf_tok.token_to_id("parseJSON") is not None  # a cross-case pre-token really made it into the vocab
    folder = tmp_path / "ckpt"
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, q_lora_rank=16,
                kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)  # fmt: skip
    ids = {"bos_token_id": hf_tok.token_to_id(chat.BOS), "eos_token_id": hf_tok.token_to_id(chat.EOS)}
    YoutuForCausalLM(YoutuConfig(vocab_size=1024, num_key_value_heads=2, **tiny, **ids)).save_pretrained(
        folder
    )
    save_tokenizer(hf_tok, folder)
    gguf = export_gguf(folder, tmp_path / "m.gguf", "f32", progress=False)
    llm = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    tok = load_tokenizer(folder)

    rng = random.Random(0)
    words = [w for t in corpus[: len(MIXED) + 1] for w in t.split(" ")] + [
        "\n",
        "\r\n",
        "\t",
        "  ",
        *chat.SPECIAL_TOKENS,
    ]
    texts = [
        *MIXED,
        *("".join(rng.choice(words) + rng.choice(["", " ", "\n"]) for _ in range(8)) for _ in range(300)),
    ]
    # the text markers are USER_DEFINED: llama.cpp shows them when it detokenizes, and drops control tokens
    call = chat.format_tool_call("calculate", {"expression": "17 * 23"})
    assert llm.detokenize(tok.encode(chat.THINK_START + call + chat.EOS)).decode() == chat.THINK_START + call
    for text in texts:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text), repr(text)
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(
            text, parse_special=False
        )
