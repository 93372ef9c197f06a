"""export all -> validate -> bench on a small random checkpoint, with every real runtime (no mocks)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCK_CONFIG, _hf_checkpoint
from typer.testing import CliRunner

from edgeport.cli import app
from edgeport.validate import GATES, GREEDY_TOKENS, compare_logits, gate_failures

REQUIRED = {"torch", "onnxruntime", "ort-mobile", "onnxruntime-genai", "llama.cpp"}


def build_export(root: Path, tokenizer_dir: Path, formats: list[str] | None = None) -> Path:
    """A small block-aligned checkpoint exported to every format (no validation yet)."""
    from edgeport.export.all import export_all

    ckpt = _hf_checkpoint(root / "ckpt", tokenizer_dir, 1, **BLOCK_CONFIG)
    export_all(ckpt, root / "export", formats=formats, progress=False)
    return root / "export"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    return build_export(tmp_path_factory.mktemp("validate"), tokenizer_dir)


@pytest.fixture(scope="module")
def report(export_dir: Path) -> dict:
    """`edgeport validate` through the CLI, as a user runs it."""
    result = CliRunner().invoke(app, ["validate", str(export_dir), "--episodes", "1", "--ids", "64"])
    assert result.exit_code == 0, result.output
    return json.loads((export_dir / "report.json").read_text())


def test_export_layout_and_manifest(export_dir: Path) -> None:
    manifest = json.loads((export_dir / "manifest.json").read_text())
    paths = {a["path"]: a for a in manifest["artifacts"]}
    for p in (
        "checkpoint",
        "quantized/q8_0",
        "quantized/q4_0",
        "gguf/model-f16.gguf",
        "gguf/model-q8_0.gguf",
        "gguf/model-q4_0.gguf",
        "onnx/fp32",
        "onnx/int8",
        "onnx/int4",
    ):
        assert (export_dir / p).exists() and paths[p]["bytes"] > 0, p
    for p in ("onnx/fp32", "onnx/int8", "onnx/int4"):
        assert (export_dir / p / "model.ort").is_file() and (export_dir / p / "genai_config.json").is_file()
    # quantize once, emit both: the GGUF and ONNX of one precision come from the same quantized checkpoint
    assert paths["gguf/model-q4_0.gguf"]["from"] == paths["onnx/int4"]["from"] == "quantized/q4_0"
    assert paths["gguf/model-q8_0.gguf"]["from"] == paths["onnx/int8"]["from"] == "quantized/q8_0"
    assert (export_dir / "gguf/model-q4_0.gguf").stat().st_size < (
        export_dir / "gguf/model-f16.gguf"
    ).stat().st_size


def test_validate_passes_with_every_runtime(export_dir: Path, report: dict) -> None:
    assert report["passed"]
    rows = [r for r in report["rows"] if r["status"] in ("pass", "reference")]
    assert REQUIRED <= {r["runtime"] for r in rows}
    ref = next(r for r in rows if r["status"] == "reference")
    for r in rows:
        assert math.isfinite(r["ppl"]) and r["ppl"] > 1, r
        if r["gate"] == "fp32":  # the same weights decode the same tokens, so the agent episode ends the same
            assert r["tool_success"] == ref["tool_success"], r
        if r["status"] == "pass":
            assert (
                math.isfinite(r["kl"]) and 0 <= r["top1"] <= 1 and 0 <= r["greedy_match"] <= r["greedy_total"]
            )
    by = {(r["runtime"], r["precision"]): r for r in rows}
    # the same fp32 weights through torch, ORT and ORT-format agree to float rounding
    for rt in ("torch-absorbed", "onnxruntime", "ort-mobile", "onnxruntime-genai"):
        assert by[(rt, "fp32")]["max_abs"] < GATES["fp32"].max_abs, by[(rt, "fp32")]
    # the llama.cpp tokenizer equals the HF tokenizer on the mixed texts
    assert by[("llama.cpp", "f16")]["tokenizer_match"] == by[("llama.cpp", "f16")]["tokenizer_total"]
    # int4 loses more than int8, in both runtimes built from the same codes
    for rt, p8, p4 in (("llama.cpp", "q8_0", "q4_0"), ("onnxruntime", "int8", "int4")):
        assert by[(rt, p8)]["kl"] < by[(rt, p4)]["kl"]
    md = (export_dir / "report.md").read_text()
    for name in REQUIRED:
        assert f"| {name} |" in md
    assert "llama.cpp-metal" in report["skipped"] or "llama.cpp-metal" in {r["runtime"] for r in rows}
    assert (export_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupted_artifacts_fail(export_dir: Path, tmp_path: Path) -> None:
    """Zeroed weights in a GGUF and a truncated .ort: validate exits non-zero and names both rows."""
    from gguf import GGUFReader

    from edgeport.inputs import tree_sha256

    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    gguf_path = bad / "gguf/model-q4_0.gguf"
    embd = next(t for t in GGUFReader(str(gguf_path)).tensors if t.name == "token_embd.weight")
    with open(gguf_path, "r+b") as f:
        f.seek(int(embd.data_offset))
        f.write(bytes(int(embd.n_bytes)))
    ort = bad / "onnx/int8/model.ort"
    ort.write_bytes(ort.read_bytes()[: ort.stat().st_size // 2])
    result = CliRunner().invoke(app, ["validate", str(bad)])  # modified after the export: refused up front
    assert result.exit_code == 2 and "sha256 does not match" in result.output, result.output
    manifest = json.loads((bad / "manifest.json").read_text())  # as if the export had written them corrupt
    for a in manifest["artifacts"]:
        a["sha256"] = tree_sha256(bad / a["path"])
    (bad / "manifest.json").write_text(json.dumps(manifest))

    args = [
        "validate",
        str(bad),
        "--episodes",
        "0",
        "--ids",
        "32",
        "--runtime",
        "llama.cpp",
        "--runtime",
        "ort-mobile",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    rows = {(r["runtime"], r["precision"]): r for r in json.loads((bad / "report.json").read_text())["rows"]}
    assert rows[("llama.cpp", "q4_0")]["status"] == "fail"
    assert any(f.startswith("KL") for f in rows[("llama.cpp", "q4_0")]["failures"])
    assert rows[("ort-mobile", "int8")]["status"] == "error"
    assert rows[("llama.cpp", "q8_0")]["status"] == rows[("ort-mobile", "int4")]["status"] == "pass"
    assert "FAILED" in (bad / "report.md").read_text()


@pytest.mark.parametrize("make", ["missing", "empty", "file", "bad_json"])
def test_not_an_export_is_one_line(tmp_path: Path, make: str) -> None:
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    elif make == "file":
        target.write_text("hello")
    elif make == "bad_json":
        target.mkdir()
        (target / "manifest.json").write_text("{not json")
    result = CliRunner().invoke(app, ["validate", str(target)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(target) in lines[0], result.output


def test_export_all_refuses_to_replace_a_foreign_folder(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    ckpt = _hf_checkpoint(tmp_path / "ckpt", tokenizer_dir, 0, **BLOCK_CONFIG)
    result = CliRunner().invoke(app, ["export", "all", str(ckpt), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "refusing" in result.output
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_bench_json(export_dir: Path) -> None:
    from edgeport.bench import bench
    from edgeport.checkpoint import load_config

    res = bench(
        export_dir,
        prompt_tokens=16,
        new_tokens=8,
        repeats=1,
        progress=False,
        runtimes=["torch-absorbed", "onnxruntime", "llama.cpp"],
    )
    on_disk = json.loads((export_dir / "bench.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(res["rows"]))
    assert 0.05 < res["machine"]["copy_gbps_best"] < 5000
    cfg = load_config(export_dir / "checkpoint")
    rows = {(r["runtime"], r["precision"]): r for r in res["rows"]}
    assert len(rows) == 1 + 3 + 3
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["ttft_ms"] > 0
        assert 20 * 2**20 < r["peak_rss_mib"] * 2**20 < 16 * 2**30
        assert r["file_bytes"] > 0 and r["weight_bytes_per_token"] > 0 and r["bw_fraction"] > 0
    # the MLA latent cache: kv_lora_rank + rope dims per layer, f16 in llama.cpp (measured) and in ORT's int4
    # export, fp32 in torch
    latent = cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    assert rows[("llama.cpp", "q4_0")]["kv_bytes_per_token"] == 2 * latent
    assert rows[("onnxruntime", "int4")]["kv_bytes_per_token"] == 2 * latent
    assert rows[("torch-absorbed", "fp32")]["kv_bytes_per_token"] == 4 * latent
    assert rows[("llama.cpp", "q4_0")]["file_bytes"] == (export_dir / "gguf/model-q4_0.gguf").stat().st_size
    # fewer bits, fewer bytes read per token
    w = {p: rows[("llama.cpp", p)]["weight_bytes_per_token"] for p in ("f16", "q8_0", "q4_0")}
    assert w["q4_0"] < w["q8_0"] < w["f16"]


def test_metrics_and_gates() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(16, 50)).astype(np.float32)
    same = compare_logits(ref, ref.copy())
    assert same["max_abs"] == 0 and same["kl"] == 0 and same["top1"] == 1
    shifted = compare_logits(ref, ref + 3.0)  # a constant shift leaves the distribution unchanged
    assert shifted["kl"] < 1e-12 and shifted["max_abs"] == pytest.approx(3.0)
    noisy = compare_logits(ref, ref + rng.normal(scale=2.0, size=ref.shape).astype(np.float32))
    assert noisy["kl"] > 0.1 and noisy["top1"] < 1
    nan = compare_logits(ref, np.full_like(ref, np.nan))
    row = {**nan, "greedy_match": GREEDY_TOKENS}
    assert gate_failures(row, GATES["int4"]) and gate_failures(row, GATES["fp32"])
    assert not gate_failures({**same, "greedy_match": GREEDY_TOKENS}, GATES["fp32"])
    assert gate_failures({**same, "greedy_match": GREEDY_TOKENS - 1}, GATES["f16"]) == [
        f"greedy {GREEDY_TOKENS - 1}/{GREEDY_TOKENS}"
    ]


def test_isolated_rows_and_cached_reference(export_dir: Path, tmp_path: Path) -> None:
    """Rows in their own spawned processes give the figures of the in-process run; the reference's figures are
    cached in the export and reused by the next run."""
    from edgeport.validate import validate

    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder, ignore=shutil.ignore_patterns(".validate"))
    kw = dict(n_ids=32, episodes=0, runtimes=["llama.cpp", "onnxruntime"], progress=False)
    inproc = validate(folder, isolate=False, **kw)
    (cached,) = (folder / ".validate").glob("reference-*.npz")
    isolated = validate(folder, isolate=True, **kw)
    assert inproc["passed"] and isolated["passed"]
    ref_a, ref_b = inproc["rows"][0], isolated["rows"][0]
    assert ref_a["status"] == "reference" and ref_b["seconds"] == ref_a["seconds"]  # read back, not re-run
    assert list((folder / ".validate").glob("reference-*.npz")) == [cached]
    for a, b in zip(inproc["rows"][1:], isolated["rows"][1:], strict=True):
        assert (a["runtime"], a["precision"]) == (b["runtime"], b["precision"])
        assert a["greedy"] == b["greedy"] and a["kl"] == pytest.approx(b["kl"], rel=1e-6, abs=1e-12)
        assert "peak_rss_mib" not in a and 20 < b["peak_rss_mib"] < 4096  # each child's own VmHWM


def _killed(_: object) -> dict:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def test_a_killed_row_is_an_error_not_a_hang() -> None:
    from edgeport.validate.run import isolated

    out = isolated(_killed, None)
    assert out["error"] == "its process died with exit code -9 (killed: out of memory?)"


def test_large_model_default_rows(export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above LARGE_MODEL_PARAMS: the rows that finish in minutes run, the others are listed with why and
    --all-rows; the reference runs no agent episodes, the runtimes a few with a lower token cap."""
    import edgeport.validate.run as run

    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    monkeypatch.setattr(run, "LARGE_MODEL_PARAMS", 0)
    runtimes = ["llama.cpp", "llama.cpp-norepack", "onnxruntime", "onnxruntime-genai"]
    kw = dict(n_ids=32, runtimes=runtimes, progress=False)
    report = run.validate(folder, isolate=False, **kw)
    status = {(r["runtime"], r["precision"]): r["status"] for r in report["rows"]}
    assert status == {
        ("torch", "fp32"): "reference",
        ("onnxruntime", "fp32"): "skipped",
        ("onnxruntime", "int8"): "pass",
        ("onnxruntime", "int4"): "pass",
        ("onnxruntime-genai", "fp32"): "skipped",
        ("onnxruntime-genai", "int8"): "skipped",
        ("onnxruntime-genai", "int4"): "pass",
        ("llama.cpp", "f16"): "pass",
        ("llama.cpp", "q8_0"): "pass",
        ("llama.cpp", "q4_0"): "pass",
        ("llama.cpp-norepack", "q8_0"): "skipped",
        ("llama.cpp-norepack", "q4_0"): "skipped",
    }
    assert "not run by default" in report["skipped"]["onnxruntime fp32"]
    assert "--all-rows" in report["skipped"]["llama.cpp-norepack q4_0"]
    inp = report["inputs"]
    assert (inp["agent_episodes"], inp["agent_tokens"], inp["reference_episodes"]) == (2, 64, 0)
    assert inp["agent_rows"] == "int4 rows"
    tools = {
        (r["runtime"], r["precision"]): r.get("tool_success")
        for r in report["rows"]
        if r["status"] != "skipped"
    }
    assert [k for k, v in tools.items() if v is not None] == [
        ("onnxruntime", "int4"),
        ("onnxruntime-genai", "int4"),
        ("llama.cpp", "q4_0"),
    ]
    every = run.validate(folder, isolate=False, all_rows=True, episodes=0, **kw)
    assert all(r["status"] in ("reference", "pass") for r in every["rows"]) and len(every["rows"]) == 12
