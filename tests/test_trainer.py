"""The trainer: learning, exact resume, crash-safe checkpoints, DDP == single process, transformers loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import edgeport.checkpoint as ckpt_mod
import edgeport.trainer as T
from edgeport.errors import EdgeportError

# Tiny dims (every matrix a multiple of 32), a 512-token vocab, short rows: a step takes a few milliseconds.
MODEL = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=2, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=32,
    v_head_dim=32, max_position_embeddings=256,
)  # fmt: skip
TEXT = (
    "The quick brown fox jumps over the lazy dog. A small model learns to call tools and answer briefly.\n\n"
    "Convert 12 km to miles, then add 3. The answer is 10.46 miles. What day of the week is 2024-02-01?\n\n"
) * 20


def base_cfg(out: Path, **kw) -> T.TrainConfig:
    cfg = T.TrainConfig(
        out=str(out), steps=24, batch_size=4, seq_len=128, lr=3e-3, min_lr=3e-4, warmup=4, eval_every=8,
        eval_rows=8, save_every=8, log_every=4, stages="pretrain:0.25,midtrain:0.25,sft", n_episodes=24,
        builtin_text=False, model=MODEL, progress=False, threads=1,
    )  # fmt: skip
    return replace(cfg, **kw)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Real data through the real pipeline (trained tokenizer, generated episodes, packing), prepared once."""
    root = tmp_path_factory.mktemp("trainer")
    text = root / "text.txt"
    text.write_text(TEXT)
    cfg = base_cfg(root / "prep", data=[str(text)])
    data = T.prepare_data(cfg, root / "prep" / "data")
    return root, text, data


def run(cfg: T.TrainConfig, prepared) -> Path:
    _, _, data = prepared
    return T.train(cfg, data=data, tokenizer_dir=prepared[0] / "prep" / "data")


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in T.read_log(out)]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return dict(ckpt_mod.iter_tensors(folder))


def test_schedule_and_data_order() -> None:
    assert T.parse_stages("pretrain:0.25,midtrain:0.25,sft", 24) == [
        ("pretrain", 0, 6), ("midtrain", 6, 12), ("sft", 12, 24)]  # fmt: skip
    assert T.parse_stages("sft", 10) == [("sft", 0, 10)]
    with pytest.raises(EdgeportError, match="unknown stage"):
        T.parse_stages("pretrain,finetune", 10)
    cfg = base_cfg(Path("x"), steps=100, warmup=10)
    lrs = [T.lr_at(cfg, s) for s in range(100)]
    assert lrs[9] == pytest.approx(cfg.lr) and lrs[0] < lrs[5] < lrs[9]
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] >= cfg.min_lr
    # rows: a permutation per epoch, a pure function of (seed, salt, position)
    first = T.batch_rows(10, 0, 0, 0, 10)
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(T.batch_rows(10, 0, 0, 3, 12), torch.cat([first[3:], T.batch_rows(10, 0, 0, 10, 5)]))
    assert not torch.equal(first, T.batch_rows(10, 1, 0, 0, 10))


def test_loss_decreases_and_checkpoint_loads_in_transformers(prepared, tmp_path: Path) -> None:
    from transformers import YoutuForCausalLM as HFYoutu

    from edgeport.tokenizer import load_tokenizer

    out = tmp_path / "run"
    cfg = base_cfg(out, steps=40, stages="sft", eval_every=20, save_every=20)
    ckpt = run(cfg, prepared)
    log = T.read_log(out)
    assert [r["step"] for r in log] == list(range(1, 41))
    first, last = sum(losses(out)[:5]) / 5, sum(losses(out)[-5:]) / 5
    assert last < first - 1.0, (first, last)
    evals = [r["val_sft"]["loss"] for r in log if "val_sft" in r]
    assert len(evals) == 2 and evals[1] < evals[0]
    assert {"tok_s", "lr", "gnorm"} <= set(log[-1])
    # an HF folder with tokenizer files, loadable by transformers with the same logits as edgeport
    assert (ckpt / "tokenizer.json").is_file() and (ckpt / "tokenizer_config.json").is_file()
    ours = ckpt_mod.load_model(ckpt)
    tok = load_tokenizer(ckpt)
    assert (ours.config.bos_token_id, ours.config.eos_token_id) == (tok.bos_id, tok.eos_id)
    hf = HFYoutu.from_pretrained(ckpt, dtype=torch.float32).eval()
    ids = prepared[2]["val_sft"][0][:2, :64]
    with torch.no_grad():
        a, b = ours(ids), hf(ids).logits
    assert a.shape == b.shape == (2, 64, MODEL["vocab_size"])
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    orig = T.lr_at

    def lr_at(cfg, s):
        if s == step:
            raise KeyboardInterrupt  # what Ctrl-C / SIGINT raises in the middle of a run
        return orig(cfg, s)

    monkeypatch.setattr(T, "lr_at", lr_at)


def test_resume_equals_uninterrupted(prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = run(base_cfg(tmp_path / "full"), prepared)
    out = tmp_path / "cut"
    with monkeypatch.context() as m:
        _interrupt_at(m, 13)  # killed between checkpoints (saved at 8 and 16)
        with pytest.raises(KeyboardInterrupt):
            run(base_cfg(out), prepared)
    assert len(T.read_log(out)) == 13 and T.find_checkpoint(out) is not None
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 8
    with pytest.raises(EdgeportError, match="nothing to resume"):
        run(base_cfg(tmp_path / "empty", resume=True), prepared)
    resumed = run(base_cfg(out, resume=True), prepared)
    assert losses(out) == losses(tmp_path / "full")  # bitwise on CPU fp32
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_during_save_keeps_previous_checkpoint(
    prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_save = ckpt_mod.save_model
    calls = []

    def dying_save(*args, **kw):
        calls.append(1)
        path = real_save(*args, **kw)  # the HF files of step 16 are written into the temporary folder...
        if len(calls) == 2:
            raise KeyboardInterrupt  # ...and the process dies before the trainer state is
        return path

    with monkeypatch.context() as m:
        m.setattr(ckpt_mod, "save_model", dying_save)
        with pytest.raises(KeyboardInterrupt):
            run(base_cfg(out), prepared)
    found = T.find_checkpoint(out)
    assert found == out / "checkpoint"
    assert json.loads((found / "trainer.json").read_text())["step"] == 8
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "log.jsonl"]  # no half-written folder
    model = ckpt_mod.load_model(found)  # the previous checkpoint is complete and loads
    assert model.config.vocab_size == MODEL["vocab_size"]
    run(base_cfg(out, resume=True), prepared)
    run(base_cfg(tmp_path / "ref"), prepared)
    assert losses(out) == losses(tmp_path / "ref")


def test_ddp_two_processes_match_single_process(prepared, tmp_path: Path) -> None:
    """torchrun, 2 processes on gloo, batch 2 each == 1 process, batch 4: same losses, one checkpoint."""
    root, text, _ = prepared
    tok = root / "prep" / "data"
    single = base_cfg(tmp_path / "single", steps=8, batch_size=4, data=[str(text)], tokenizer=str(tok))
    T.train(single)
    ddp = replace(single, out=str(tmp_path / "ddp"), batch_size=2)
    cfg_file = tmp_path / "ddp.json"
    cfg_file.write_text(json.dumps(asdict(ddp)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edgeport.trainer", str(cfg_file)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(a) == len(b) == 8
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4, (a, b)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "checkpoint",
        "data",
        "log.jsonl",
        "summary.json",
    ]
    wa, wb = weights(tmp_path / "single" / "checkpoint"), weights(tmp_path / "ddp" / "checkpoint")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4


def test_evaluate_model_and_cli(prepared, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeport.cli import app

    ckpt = run(base_cfg(tmp_path / "run", steps=4, eval_every=0), prepared)
    m = T.evaluate_model(tmp_path / "run", n_tasks=2, seq_len=128, max_rows=4)  # a run folder resolves too
    assert m["model"] == str(ckpt) and m["parameters"] > 0
    assert m["val_text"]["loss"] > 0 and m["val_sft"]["ppl"] == pytest.approx(
        2.718281828 ** m["val_sft"]["loss"]
    )
    assert m["agent"]["n"] == 2 and m["agent"]["success_rate"] == m["agent"]["reasons"].get("ok", 0) / 2
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(ckpt), "--tasks", "2", "--transcripts", str(tmp_path / "t.jsonl")])
    assert r.exit_code == 0, r.output
    assert "tool-use success" in r.output and "held-out text" in r.output
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"user", "reference", "calls", "final", "failure_mode"} <= set(rows[0])
    r = runner.invoke(app, ["eval", str(ckpt), "--transcripts", str(tmp_path)])  # a folder: refused up front
    assert r.exit_code == 2 and "exists and is a folder" in r.output and "tool-use success" not in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing.txt")])
    assert r.exit_code == 2 and "training data file not found" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--resume"])
    assert r.exit_code == 2 and "nothing to resume" in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--stage", "warmup"])
    assert r.exit_code == 2 and "unknown stage" in r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such model folder" in r.output


def test_training_md_is_rendered_from_metrics_and_says_which_eval_set() -> None:
    """The shipped TRAINING.md is training_md(metrics.json); a build measured before the generator changed also
    shows its figure on the current eval set, and only then."""
    from edgeport.default_model.__main__ import HERE, training_md

    m = json.loads((HERE / "metrics.json").read_text())
    assert (HERE / "TRAINING.md").read_text() == training_md(m)
    m.pop("agent_on_current_eval_set", None)  # a build measured on today's generator: no second figure
    assert "on the current eval set" not in training_md(m)
    m["agent_on_current_eval_set"] = m["experiments"]["shipped_before"]["agent_on_current_eval_set"]
    assert "on the current eval set" in training_md(m)


def test_polish_needs_a_finished_build(tmp_path: Path) -> None:
    """`--polish BASE` continues a build and records BASE's metrics, so a folder without them is refused up front
    (one line naming the folder), before any data is made."""
    from edgeport.default_model.__main__ import main

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        main(["--polish", str(tmp_path), "--work", str(tmp_path / "run"), "--no-install"])
    assert str(tmp_path) in str(e.value) and "not a finished build" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_polish_continues_a_build_and_records_it(tmp_path: Path) -> None:
    """`--polish` starts from BASE's weights and tokenizer, runs SFT only, and its metrics carry BASE's (shown in
    TRAINING.md as the first part of the training); --steps / --set still override POLISH."""
    from edgeport.default_model.__main__ import HERE, main, training_md

    work = tmp_path / "polish"
    args = ["--polish", str(HERE), "--work", str(work), "--no-install", "--steps", "2", "--tasks", "7"]
    main([*args, "--set", "n_episodes=60", "--set", "compile=false", "--set", "eval_every=0"])
    m = json.loads((work / "metrics.json").read_text())
    base = json.loads((HERE / "metrics.json").read_text())
    assert m["recipe"]["init"] == str(HERE) and m["recipe"]["stages"] == "sft:1" and m["recipe"]["steps"] == 2
    assert m["base"]["agent"] == base["agent"] and m["base"]["recipe"] == base["recipe"]
    assert (work / "data" / "tokenizer.json").read_text() == (HERE / "tokenizer.json").read_text()
    assert f"then 2 steps, {m['train_tokens']:,} tokens" in training_md(m)
