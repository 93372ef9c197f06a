"""android_demo/: what can be checked on a Linux host without an Android SDK or a phone.

- The app's pure-Java core (android_demo/core) compiles with `javac --release 8` and runs on the host JVM.
- Its tokenizer gives the same ids as the `tokenizers` library; its chat prompt is edgeport.chat.render's text.
- Its decoding loop (LatentDecoder) runs a real exported model: every graph call goes over a pipe to onnxruntime
  on the ORT-format model.ort, so names, dtypes and shapes are the real graph's; the greedy tokens must equal
  the PyTorch reference, and the second chat turn must reuse the latent cache.
- prepare_assets.py copies an export into the app's assets with a checked manifest.
- Manifest/resources through aapt2, when it is installed (Debian: aapt + android-framework-res).
Not checked here (README): Gradle/AGP build, DEX, the APK on a device, the ORT Android AAR itself.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "android_demo"
JAVA_DTYPES = {1: np.float32, 7: np.int64, 10: np.float16}  # ONNX type codes on the pipe
ONNX_CODES = {"tensor(float)": 1, "tensor(int64)": 7, "tensor(float16)": 10}

pytestmark = pytest.mark.skipif(
    shutil.which("javac") is None or shutil.which("java") is None, reason="no JDK (javac) on this machine"
)


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classes")
    sources = sorted(str(p) for p in (DEMO / "core" / "src").rglob("*.java"))
    res = subprocess.run(
        ["javac", "--release", "8", "-d", str(out), *sources],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return out


def _java(classes: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["java", "-cp", str(classes), "dev.edgeport.core.HostCheck", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_core_selftest(java_classes: Path) -> None:
    res = _java(java_classes, "selftest")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("passed, 0 failed")


MIXED = [
    "Hello world! It's 2026-11-25; we've 1234 tokens.",
    "def add(a, b):\n    return a + b  # sum\n\n\nprint(add(17, 23))\r\n",
    "东京是日本的首都。한국어 문장도 있습니다…「カタカナ」とひらがな",
    "Emoji 🙂🚀✨ and 🇯🇵 flags, café naïve ﬁ Ångström",
    '<|begin_of_text|><|User|>What is 3*7?<|Assistant|><think>\n\n</think>\n\n<tool_call>{"name": "calculate", '
    '"arguments": {"expression": "3*7"}}</tool_call><|end_of_text|>',
    "  leading spaces, tabs\tand trailing   ",
    "unseen: zxqv wwwww ÿÿ ∮∯∰ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


def test_java_tokenizer_matches_tokenizers(java_classes: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    from conftest import TOKENIZER_TEXT

    from edgeport.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    texts = MIXED + TOKENIZER_TEXT[:5]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    res = _java(java_classes, "encode", str(tokenizer_dir / "tokenizer.json"), str(tmp_path / "texts.json"))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    for text, g in zip(texts, got, strict=True):
        assert g["ids"] == tok.encode(text), text
        assert g["decoded"] == text


def test_java_chat_prompt_matches_render(java_classes: Path, tmp_path: Path) -> None:
    from edgeport.chat import render

    convs = [
        [{"role": "user", "content": "Hi"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
            {"role": "user", "content": "多少?"},
        ],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    ]
    for conv in convs:
        (tmp_path / "m.json").write_text(json.dumps(conv))
        res = _java(java_classes, "render", str(tmp_path / "m.json"))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == render(conv, add_generation_prompt=True, enable_thinking=False)


def _read_exact(f, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise EOFError("java closed the pipe")
    return b


def _serve(proc: subprocess.Popen, sess) -> list[dict]:
    """Answer the Java PipeSession's graph runs with onnxruntime. Returns each call's feeds (name -> (dtype, shape))
    plus "last_logits", the logits row the Java loop took its next token from."""
    out, inp = proc.stdin, proc.stdout
    inputs = sess.get_inputs() + sess.get_overridable_initializers()  # as OrtDecoderSession lists them
    out.write(struct.pack("<i", len(inputs)))
    for i in inputs:
        out.write(
            struct.pack("<i", len(i.name.encode())) + i.name.encode() + struct.pack("<b", ONNX_CODES[i.type])
        )
    out.flush()
    calls = []
    while True:
        (count,) = struct.unpack("<i", _read_exact(inp, 4))
        if count < 0:
            return calls
        feeds = {}
        for _ in range(count):
            (ln,) = struct.unpack("<i", _read_exact(inp, 4))
            name = _read_exact(inp, ln).decode()
            dtype, rank = struct.unpack("<bi", _read_exact(inp, 5))
            shape = struct.unpack(f"<{rank}q", _read_exact(inp, 8 * rank))
            dt = JAVA_DTYPES[dtype]
            n = int(np.prod(shape))
            feeds[name] = np.frombuffer(_read_exact(inp, n * np.dtype(dt).itemsize), dt).reshape(shape)
        call = {k: (v.dtype, v.shape) for k, v in feeds.items()}
        calls.append(call)
        try:
            results = sess.run(None, feeds)
        except Exception as e:  # report to Java, which fails with the message
            msg = str(e).encode()
            out.write(struct.pack("<ii", -1, len(msg)) + msg)
            out.flush()
            continue
        call["last_logits"] = results[[o.name for o in sess.get_outputs()].index("logits")][0, -1].copy()
        out.write(struct.pack("<i", len(results)))
        for o, r in zip(sess.get_outputs(), results, strict=True):
            r = np.ascontiguousarray(r)
            code = {np.float32: 1, np.float16: 10, np.int64: 7}[r.dtype.type]
            out.write(struct.pack("<i", len(o.name.encode())) + o.name.encode())
            out.write(struct.pack(f"<bi{r.ndim}q", code, r.ndim, *r.shape) + r.tobytes())
        out.flush()


@pytest.fixture(scope="module", params=["fp32", "fp16"], ids=["cache_fp32", "cache_fp16"])
def exported(request, tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> tuple[Path, Path]:
    """(checkpoint, ONNX export with model.ort) of a small random model in odd dimensions; fp32 weights, with a
    float32 latent cache (the fp32 export's) or a float16 one (what int4/int8 exports hold)."""
    pytest.importorskip("edgeport.export.onnx", reason="edgeport.export.onnx is not in this tree yet")
    from conftest import _hf_checkpoint

    from edgeport.export.onnx import export_onnx

    base = tmp_path_factory.mktemp("android")
    # Untied embeddings: a random tied model greedily repeats its last token; this one says varied things and
    # ends its first reply with <|end_of_text|> (the stop path).
    ckpt = _hf_checkpoint(base / "ckpt", tokenizer_dir, seed=6, tie_word_embeddings=False)
    return ckpt, export_onnx(ckpt, base / "onnx", mobile=True, progress=False, kv_cache=request.param)


def test_prepare_assets(exported: tuple[Path, Path], tmp_path: Path) -> None:
    sys.path.insert(0, str(DEMO))
    from prepare_assets import prepare_assets

    from edgeport.errors import EdgeportError

    _, export = exported
    out = prepare_assets(export, tmp_path / "assets" / "model")
    man = json.loads((out / "edgeport_model.json").read_text())
    cfg = json.loads((out / "genai_config.json").read_text())
    assert cfg["model"]["decoder"]["filename"] == "model.ort" and man["model"] == "model.ort"
    assert (out / "model.ort").read_bytes() == (export / "model.ort").read_bytes()
    import hashlib

    for name, info in man["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"]
    dec = cfg["model"]["decoder"]
    assert man["latent_cache"]["floats_per_token"] == 2 * dec["num_hidden_layers"] * dec["head_size"]
    assert man["inputs"]["past_key_values.0.key"]["shape"][-1] == dec["head_size"]
    # Bad input: one clear error, and the destination is left as it was.
    with pytest.raises(EdgeportError, match="no genai_config.json"):
        prepare_assets(tmp_path, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    res = subprocess.run(
        [sys.executable, str(DEMO / "prepare_assets.py"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error:")


def test_java_decoder_runs_exported_model(
    java_classes: Path, exported: tuple[Path, Path], tmp_path: Path
) -> None:
    import onnxruntime as ort

    from edgeport.chat import render
    from edgeport.tokenizer import load_tokenizer
    from runtimes.torch_ref import TorchRef

    ckpt, export = exported
    cfg = json.loads((export / "genai_config.json").read_text())
    dec = cfg["model"]["decoder"]
    sess = ort.InferenceSession(str(export / "model.ort"), providers=["CPUExecutionProvider"])
    past_type = next(i.type for i in sess.get_inputs() if i.name.startswith("past_key_values."))
    cache_dt = np.float16 if past_type == "tensor(float16)" else np.float32
    turns = ["Hello there", "And 东京? 🙂"]
    max_new = 10
    (tmp_path / "turns.json").write_text(json.dumps(turns, ensure_ascii=False))
    with open(tmp_path / "stderr", "w+b") as err:
        proc = subprocess.Popen(
            [
                "java",
                "-cp",
                str(java_classes),
                "dev.edgeport.core.HostCheck",
                "chat",
                str(export),
                str(tmp_path / "turns.json"),
                str(max_new),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        try:
            calls = _serve(proc, sess)
        finally:
            proc.stdin.close()
            rc = proc.wait(timeout=60)
        err.seek(0)
        log = err.read().decode()
    assert rc == 0, log
    report = json.loads(log.strip().splitlines()[-1])

    tok = load_tokenizer(ckpt)
    ref = TorchRef(ckpt)
    conv: list[dict] = []
    run = 0
    for turn, r in zip(turns, report, strict=True):
        conv.append({"role": "user", "content": turn})
        prompt = tok.encode(render(conv, add_generation_prompt=True, enable_thinking=False))
        assert r["prompt"] == prompt  # Java tokenizer + template == Python's
        assert r["ids"] == ref.generate(prompt, max_new, (tok.eos_id,))  # greedy tokens == PyTorch reference
        content = [t for t in r["ids"] if t != tok.eos_id]
        assert r["reply"] == tok.decode(content) and r["streamed"].startswith(r["reply"])
        conv.append({"role": "assistant", "content": r["reply"]})
        # Every step's logits (prefill over the new suffix, then one token at a time on the latent cache) equal
        # the teacher-forced PyTorch logits at that position.
        want = ref.logits(prompt + r["ids"])[len(prompt) - 1 : len(prompt) - 1 + r["runs"]]
        got = np.stack([c["last_logits"] for c in calls[run : run + r["runs"]]])
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)  # a float16 cache too (measured 1.1e-4)
        run += r["runs"]
        half = dec["head_size"]
        assert r["cache_floats"] == r["cached_after"] * dec["num_hidden_layers"] * 2 * half
    assert report[0]["ids"][-1] == tok.eos_id and len(set(report[0]["ids"])) > 3
    assert run == len(calls)
    # Turn 1: one prefill run, then one run per further token, each feeding the previous present.* back.
    first = calls[0]
    assert first["input_ids"] == (np.int64, (1, len(report[0]["prompt"])))
    assert first["past_key_values.0.key"] == (cache_dt, (1, 1, 0, dec["head_size"]))
    assert calls[1]["input_ids"][1] == (1, 1)
    assert calls[1]["past_key_values.0.value"][1] == (1, 1, len(report[0]["prompt"]), dec["head_size"])
    assert set(first) - {"last_logits"} == {
        i.name for i in sess.get_inputs() + sess.get_overridable_initializers()
    }  # fed every input, nothing else
    assert first["logits_to_keep"] == (np.int64, ())  # the prefill computes only the last row's logits
    # Turn 2 reuses the cache of the shared prefix: its prefill run only carries the new tokens.
    r2 = report[1]
    assert 0 < r2["cached_before"] < len(r2["prompt"])
    prefill2 = calls[report[0]["runs"]]
    reused = prefill2["past_key_values.0.key"][1][2]
    assert reused > len(report[0]["prompt"]) // 2
    assert prefill2["input_ids"][1] == (1, len(r2["prompt"]) - reused)


def test_app_module_links_and_compiles(tmp_path: Path) -> None:
    """aapt2 links the manifest and resources against the platform (as AGP would, with the namespace as package);
    then javac compiles the app's Java with the generated R.java, the core, and API signature stubs."""
    aapt2 = shutil.which("aapt2")
    framework = Path("/usr/share/android-framework-res/framework-res.apk")
    if aapt2 is None or not framework.is_file():
        pytest.skip(
            "aapt2 / android-framework-res not installed (Debian: apt-get install aapt android-framework-res)"
        )
    app = DEMO / "app" / "src" / "main"
    manifest = (app / "AndroidManifest.xml").read_text()
    assert "android.permission.INTERNET" not in manifest  # offline by construction
    ns = 'xmlns:android="http://schemas.android.com/apk/res/android"'
    (tmp_path / "AndroidManifest.xml").write_text(
        manifest.replace(ns, ns + ' package="dev.edgeport.demo"', 1)
    )
    subprocess.run([aapt2, "compile", "--dir", str(app / "res"), "-o", str(tmp_path / "res.zip")], check=True)
    res = subprocess.run(
        [aapt2, "link", "-I", str(framework), "--manifest", str(tmp_path / "AndroidManifest.xml"),
         "-o", str(tmp_path / "app.apk"), str(tmp_path / "res.zip"), "--java", str(tmp_path / "gen"),
         "--min-sdk-version", "28", "--target-sdk-version", "29"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    badging = subprocess.run(
        [aapt2, "dump", "badging", str(tmp_path / "app.apk")], capture_output=True, text=True
    )
    assert "launchable-activity: name='dev.edgeport.demo.ChatActivity'" in badging.stdout
    sources = [str(p) for d in (DEMO / "tools" / "stubs", DEMO / "core" / "src" / "main", app / "java", tmp_path / "gen")
               for p in d.rglob("*.java")]  # fmt: skip
    res = subprocess.run(["javac", "--release", "8", "-d", str(tmp_path / "classes"), *sources],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "classes" / "dev" / "edgeport" / "demo" / "ChatActivity.class").is_file()
