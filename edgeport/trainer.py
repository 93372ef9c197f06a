"""The trainer: a small nanoGPT-style loop for Youtu (Dense MLA) models, single-process or under torchrun.

    tokenizer + packed data (prepared once per run, cached in OUT/data)
      -> stages by fraction of steps: pretrain (prose) -> midtrain (prose + trajectories) -> sft (assistant only)
      -> AdamW, linear warmup + cosine decay, gradient accumulation and clipping, periodic held-out eval
      -> OUT/checkpoint: an HF folder (config.json, model.safetensors, tokenizer) + trainer_state.pt, written
         atomically, so a run killed at any moment leaves the last good checkpoint and `resume` continues exactly.

Data order is a pure function of (seed, step): the rows of step s are positions [s*G, (s+1)*G) of a per-epoch
seeded permutation of the stage's packed rows (G = global batch), and rank r of W takes its slice of every
micro-batch. The loss of a step is normalised by the number of target tokens in the whole global batch, so
W processes x batch b give the same update as 1 process x batch W*b.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from edgeport.errors import EdgeportError
from edgeport.io import atomic_dir, check_out
from edgeport.model import YoutuForCausalLM, preset

STATE_FILE = "trainer_state.pt"
DEFAULT_STAGES = "pretrain:0.3,midtrain:0.3,sft:0.4"
Packed = tuple[torch.Tensor, torch.Tensor]  # (input_ids [N, L+1] long, loss_mask [N, L+1] bool)


@dataclass
class TrainConfig:
    preset: str = "tiny"
    out: str = "runs/tiny"
    steps: int = 1000
    batch_size: int = 16  # sequences per micro-batch per process
    seq_len: int = 512
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 50
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_rows: int = 32  # held-out rows per eval set
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    stages: str = DEFAULT_STAGES  # "name:fraction,..." (pretrain, midtrain, sft); fractions of `steps`
    data: list[str] = field(default_factory=list)  # extra .txt / .jsonl files
    n_episodes: int = 2000  # generated training trajectories
    exact_turns: bool = False  # also each history-form turn in its exact context (data.episode_examples)
    prompted_turns: float = 0.0  # share of earlier non-thinking turns shown as prompted (data.prompted_turns)
    sessions: bool = False  # chain all-tool episodes into row-long conversations (data.sessions)
    sft_text: float = 0.0  # share of the SFT stage's tokens that are text (data.mixture)
    all_tools: float | None = None  # share of episodes offering every tool (None: the generator's)
    withhold: float | None = None  # share of single-tool tasks withholding it (None: the generator's)
    builtin_text: bool = True
    tokenizer: str | None = None  # an existing tokenizer folder; else one is trained on the training text
    split_words: bool = False  # the trained BPE never joins a word to the char before it (train_tokenizer)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset (tests, tuning)
    init: str | None = None  # start from the weights of this checkpoint folder (fine-tuning)
    dtype: str = "auto"  # auto: bf16 autocast on CUDA when supported, fp32 on CPU; or float32 / bfloat16
    fsdp: bool = False
    compile: bool = False  # torch.compile the training step (CPU: ~1.3x for the default model's size)
    threads: int = 0  # torch CPU threads per process (0: torch's default)
    resume: bool = False
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeportError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**d)


# ---- schedule ----------------------------------------------------------------------------------------
def parse_stages(spec: str, steps: int) -> list[tuple[str, int, int]]:
    """'pretrain:0.3,sft:0.7' -> [(name, first_step, end_step)] covering [0, steps). Bare names split evenly."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise EdgeportError(f"empty stage list {spec!r}")
    names, fracs = [], []
    for p in parts:
        name, _, frac = p.partition(":")
        if name not in ("pretrain", "midtrain", "sft"):
            raise EdgeportError(f"unknown stage {name!r} in {spec!r} (choose pretrain, midtrain, sft)")
        try:
            fracs.append(float(frac) if frac else None)
        except ValueError:
            raise EdgeportError(f"bad stage fraction {frac!r} in {spec!r}") from None
        names.append(name)
    given = sum(f for f in fracs if f is not None)
    n_free = sum(f is None for f in fracs)
    fracs = [f if f is not None else max(0.0, 1.0 - given) / n_free for f in fracs]
    total = sum(fracs)
    if total <= 0:
        raise EdgeportError(f"stage fractions in {spec!r} sum to 0")
    out, start, acc = [], 0, 0.0
    for i, (name, f) in enumerate(zip(names, fracs, strict=True)):
        acc += f / total
        end = steps if i == len(names) - 1 else round(acc * steps)
        out.append((name, start, end))
        start = end
    return [s for s in out if s[2] > s[1]]


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, t))) * (cfg.lr - cfg.min_lr)


def batch_rows(n_rows: int, seed: int, salt: int, start: int, count: int) -> torch.Tensor:
    """Positions [start, start + count) of the concatenation of per-epoch seeded permutations of n_rows."""
    pos = torch.arange(start, start + count)
    epochs, offs = pos // n_rows, pos % n_rows
    out = torch.empty(count, dtype=torch.long)
    for e in epochs.unique().tolist():
        g = torch.Generator().manual_seed(seed * 1_000_003 + salt * 10_007 + e)
        perm = torch.randperm(n_rows, generator=g)
        sel = epochs == e
        out[sel] = perm[offs[sel]]
    return out


# ---- distributed -------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.cpu()


def setup_dist() -> Dist:
    """Single process, or the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world == 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Dist(rank, world, local, device)


# ---- data --------------------------------------------------------------------------------------------
def prepare_data(cfg: TrainConfig, folder: Path) -> dict[str, Packed]:
    """Train (or copy) the tokenizer and pack every stage's data and the held-out sets into `folder`.

    Returns {stage name: packed rows} plus {"val_text": ..., "val_sft": ...}. Cached: a folder written for the
    same data options is reused, so a resumed run sees exactly the same rows.
    """
    from edgeport import data as D
    from edgeport.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

    key = data_key(cfg)
    meta = folder / "data.json"
    if meta.is_file() and json.loads(meta.read_text()) == key:
        return torch.load(folder / "packed.pt", weights_only=True)
    for p in cfg.data:
        if not Path(p).is_file():
            raise EdgeportError("training data file not found", p)
    vocab = _model_config(cfg).vocab_size
    with atomic_dir(folder, marker="data.json") as tmp:
        train_text = list(D.builtin_text("train")) if cfg.builtin_text else []
        for p in cfg.data:
            train_text.extend(D.load_text_file(p))
        episodes = D.generate_episodes(cfg.n_episodes, seed=cfg.seed, split="train", **_offer_shares(cfg))
        if cfg.tokenizer:
            save_tokenizer(load_tokenizer(cfg.tokenizer).hf, tmp)
        else:
            corpus = train_text + [D.episode_text(ep) for ep in episodes[:2000]]
            save_tokenizer(train_tokenizer(corpus, vocab_size=vocab, split_words=cfg.split_words), tmp)
        tok = load_tokenizer(tmp)
        packed = D.mixture(
            tok,
            train_text,
            episodes,
            seq_len=cfg.seq_len,
            seed=cfg.seed,
            exact_turns=cfg.exact_turns,
            prompted=cfg.prompted_turns,
            session=cfg.sessions,
            sft_text=cfg.sft_text,
        )
        val_eps = D.generate_episodes(max(64, cfg.eval_rows * 4), seed=cfg.seed + 1, split="val")
        packed["val_text"] = D.pack(
            [D.encode_example(tok, t, "text") for t in D.builtin_text("val")], cfg.seq_len, tok.eos_id
        )
        packed["val_sft"] = D.pack(
            [D.encode_example(tok, e, "sft") for e in val_eps], cfg.seq_len, tok.eos_id
        )
        torch.save(packed, tmp / "packed.pt")
        (tmp / "data.json").write_text(json.dumps(key))
    return packed


def data_key(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "seed": cfg.seed, "seq_len": cfg.seq_len, "data": [str(Path(p).resolve()) for p in cfg.data],
        "n_episodes": cfg.n_episodes, "builtin_text": cfg.builtin_text, "tokenizer": cfg.tokenizer,
        "vocab": _model_config(cfg).vocab_size,
    } | ({"exact_turns": True} if cfg.exact_turns else {}) | (
        {"prompted_turns": cfg.prompted_turns} if cfg.prompted_turns else {}) | (
        {"sessions": True} if cfg.sessions else {}) | (
        {"sft_text": cfg.sft_text} if cfg.sft_text else {}) | (
        {"split_words": True} if cfg.split_words else {}) | _offer_shares(cfg)  # fmt: skip


def _offer_shares(cfg: TrainConfig) -> dict[str, float]:
    """The tool-offer shares the config sets (generate_episodes' all_tools / withhold); unset ones keep its defaults."""
    return {k: v for k in ("all_tools", "withhold") if (v := getattr(cfg, k)) is not None}


def _model_config(cfg: TrainConfig):
    try:
        return preset(cfg.preset, **cfg.model)
    except (ValueError, TypeError) as e:
        raise EdgeportError(str(e)) from None


# ---- checkpoints -------------------------------------------------------------------------------------
def find_checkpoint(out: Path) -> Path | None:
    """The last complete checkpoint of a run, also when a kill hit the instant between atomic_dir's renames."""
    for p in (out / "checkpoint", out / ".checkpoint.old"):
        if (p / STATE_FILE).is_file() and (p / "config.json").is_file():
            return p
    return None


def load_state(path: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint, loaded with weights_only=True: a run folder someone else made cannot
    run code here (a pickled call is refused with one line, never executed)."""
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise EdgeportError(
            f"cannot read trainer state ({str(e).splitlines()[0][:100]}); a state file from an older edgeport "
            "or from elsewhere is not loaded (it could run code)",
            path,
        ) from None
    if not isinstance(state, dict) or not {"step", "optimizer", "rng", "history"} <= set(state):
        raise EdgeportError("cannot read trainer state (not an edgeport trainer state)", path)
    return state


def _rng_state() -> dict[str, Any]:
    # numpy's state as plain ints, so the state file loads with torch.load(weights_only=True) (no pickle)
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    s = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _full_states(model: torch.nn.Module, opt: torch.optim.Optimizer, fsdp: bool) -> tuple[dict | None, dict]:
    """(full model state, or None when the unwrapped model holds it; full optimizer state keyed by parameter
    name, the same for single-process, DDP and FSDP runs, so a run can resume under another layout).
    Collective under FSDP: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    msd, osd = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return (msd if fsdp else None), osd


def save_checkpoint(
    path: Path, raw: YoutuForCausalLM, model_sd: dict | None, opt_sd: dict, step: int, cfg: TrainConfig,
    tokenizer_dir: Path | None, history: list[dict],
) -> None:  # fmt: skip
    """One atomic folder: HF checkpoint (loadable by transformers) + trainer state for an exact resume."""
    from edgeport.checkpoint import save_model

    with atomic_dir(path, marker=STATE_FILE) as tmp:
        if model_sd is not None:
            raw = _materialize(raw, model_sd)
        save_model(raw, tmp, dtype="float32", tokenizer_from=tokenizer_dir)
        state = {
            "step": step,
            "optimizer": opt_sd,
            "rng": _rng_state(),
            "config": asdict(cfg),
            "history": history,
        }
        torch.save(state, tmp / STATE_FILE)
        (tmp / "trainer.json").write_text(json.dumps({"step": step, "config": asdict(cfg)}, indent=2) + "\n")


def _materialize(raw: YoutuForCausalLM, sd: dict) -> YoutuForCausalLM:
    model = YoutuForCausalLM(raw.config)
    model.load_state_dict({k: v.detach().cpu() for k, v in sd.items()}, strict=False)
    model.tie_weights()
    return model


def load_weights(model: YoutuForCausalLM, folder: Path) -> None:
    from edgeport.checkpoint import iter_tensors, load_config

    got, want = load_config(folder), model.config
    for k in ("hidden_size", "num_hidden_layers", "vocab_size", "kv_lora_rank", "intermediate_size"):
        if getattr(got, k) != getattr(want, k):
            raise EdgeportError(
                f"checkpoint has {k}={getattr(got, k)}, this run wants {getattr(want, k)}", folder
            )
    sd = dict(iter_tensors(folder, torch.float32))
    if want.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    with torch.no_grad():
        model.load_state_dict(sd, strict=True)
    model.tie_weights()


# ---- the loop ----------------------------------------------------------------------------------------
def _autocast(cfg: TrainConfig, device: torch.device):
    want = cfg.dtype
    if want == "auto":
        want = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if want in ("float32", "fp32"):
        return contextlib.nullcontext()
    if want in ("bfloat16", "bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise EdgeportError(f"unknown dtype {cfg.dtype!r} (auto, float32 or bfloat16)")


def lm_loss_sum(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over positions whose target is in the loss mask."""
    logits = model(ids[:, :-1])
    tgt, m = ids[:, 1:], mask[:, 1:]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
    return (loss * m.reshape(-1).to(loss.dtype)).sum()


@torch.no_grad()
def held_out_loss(
    model: torch.nn.Module, packed: Packed, rows: int, batch: int, d: Dist, amp: Any
) -> dict[str, float]:
    ids, mask = packed
    # rows that hold targets: a conversation longer than seq_len is cut into pieces and only the last holds the
    # reply, so the first `rows` rows alone may score nothing (a loss of 0.0 that looks like a perfect model)
    has_target = mask[:, 1:].any(dim=1)
    ids, mask = ids[has_target][:rows], mask[has_target][:rows]
    total, count = torch.zeros(()), torch.zeros(())
    mine = torch.arange(d.rank, len(ids), d.world)
    model.eval()
    for i in range(0, len(mine), batch):
        sel = mine[i : i + batch]
        b_ids, b_mask = ids[sel].to(d.device), mask[sel].to(d.device)
        with amp:
            total += lm_loss_sum(model, b_ids, b_mask).float().cpu()
        count += b_mask[:, 1:].sum().cpu()
    model.train()
    total, count = d.sum(total.double()), d.sum(count.double())
    loss = float(total / count.clamp(min=1))
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def train(
    cfg: TrainConfig, data: dict[str, Packed] | None = None, tokenizer_dir: str | Path | None = None
) -> Path:
    """Run (or resume) training; returns the checkpoint folder OUT/checkpoint. `data` and `tokenizer_dir`
    bypass data preparation (packed rows given directly, keyed by stage name plus optional val_* sets)."""
    d = setup_dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    stages = parse_stages(cfg.stages, cfg.steps)
    ckpt = find_checkpoint(out) if cfg.resume else None
    if cfg.resume and ckpt is None:
        raise EdgeportError("nothing to resume: no checkpoint with trainer state in this folder", out)
    state = None if ckpt is None else load_state(ckpt / STATE_FILE)  # before any work
    if not cfg.resume and not any((out / m).exists() for m in ("log.jsonl", "checkpoint", "data")):
        check_out(out, folder=True)  # a new run never writes into a folder it did not make
    if cfg.init and not (Path(cfg.init) / "config.json").is_file():
        raise EdgeportError("--init: not a checkpoint folder (no config.json)", cfg.init)

    # data: rank 0 prepares the tokenizer and packed rows once; the others read the cache
    if data is None:
        if d.main:
            data = prepare_data(cfg, out / "data")
        d.barrier()
        if not d.main:
            data = prepare_data(cfg, out / "data")
        tokenizer_dir = out / "data"
    assert data is not None
    for name, _, _ in stages:
        if name not in data or len(data[name][0]) == 0:
            raise EdgeportError(f"no training rows for stage {name!r}")

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    mcfg = _model_config(cfg)
    if cfg.seq_len > mcfg.max_position_embeddings:
        raise EdgeportError(
            f"seq_len {cfg.seq_len} exceeds max_position_embeddings {mcfg.max_position_embeddings}"
        )
    if tokenizer_dir is not None:  # the checkpoint's special ids are the tokenizer's
        from edgeport.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        if tok.vocab_size > mcfg.vocab_size:
            raise EdgeportError(f"tokenizer has {tok.vocab_size} tokens, the model only {mcfg.vocab_size}")
        mcfg.bos_token_id, mcfg.eos_token_id = tok.bos_id, tok.eos_id
    raw = YoutuForCausalLM(mcfg)
    raw.reset_parameters(seed=cfg.seed)
    if ckpt is not None:
        load_weights(raw, ckpt)
    elif cfg.init:
        load_weights(raw, Path(cfg.init))
    raw.to(d.device).train()
    model: torch.nn.Module = raw
    if cfg.fsdp and d.world > 1:
        from torch.distributed.fsdp import fully_shard

        for layer in raw.model.layers:
            fully_shard(layer)
        fully_shard(raw)
    elif d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(raw, device_ids=[d.local_rank] if d.device.type == "cuda" else None)

    # the compiled module is used for the training step only; held-out evals (other shapes) and checkpoints use
    # `model` / `raw`, which hold the same parameters
    step_model = torch.compile(model) if cfg.compile else model

    decay = [p for n, p in raw.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in raw.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=1e-8)

    start, history = 0, []
    if state is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
        set_optimizer_state_dict(model if cfg.fsdp else raw, opt, state["optimizer"], options=opts)
        start, history = state["step"], state["history"]
        _set_rng_state(state["rng"])
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        _rewrite_log(out / "log.jsonl", history)

    amp = _autocast(cfg, d.device)
    B, A, W = cfg.batch_size, cfg.grad_accum, d.world
    G = B * A * W
    L = next(iter(data.values()))[0].shape[1] - 1
    bar = None
    if d.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr
        )
    t_last, tok_since = time.perf_counter(), 0
    n_params = raw.num_parameters()
    for step in range(start, cfg.steps):
        si, (stage, s0, _) = next((i, s) for i, s in enumerate(stages) if s[1] <= step < s[2])
        ids_all, mask_all = data[stage]
        rows = batch_rows(len(ids_all), cfg.seed, si, (step - s0) * G, G)
        n_tgt = mask_all[rows][:, 1:].sum().clamp(min=1).double()
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_acc = torch.zeros((), dtype=torch.float64)
        for k in range(A):
            sel = rows[k * B * W + d.rank * B : k * B * W + (d.rank + 1) * B]
            ids, mask = ids_all[sel].to(d.device), mask_all[sel].to(d.device)
            sync = k == A - 1 or W == 1 or cfg.fsdp
            ctx = model.no_sync() if not sync and hasattr(model, "no_sync") else contextlib.nullcontext()
            with ctx, amp:
                loss = lm_loss_sum(step_model, ids, mask) / n_tgt.to(d.device).float()
            (loss * W).backward()  # DDP/FSDP average gradients over ranks; W undoes it (sum of token losses)
            loss_acc += loss.detach().double().cpu()
        if cfg.grad_clip > 0:
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        else:
            gnorm = 0.0
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_loss = float(d.sum(loss_acc))
        tok_since += G * L
        rec: dict[str, Any] = {"step": step + 1, "stage": stage, "loss": step_loss, "lr": lr, "gnorm": gnorm}
        last = step + 1 == cfg.steps
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
            for name in ("val_text", "val_sft"):
                if name in data:
                    rec[name] = held_out_loss(model, data[name], cfg.eval_rows, B, d, amp)
        if d.main:
            now = time.perf_counter()
            if (step + 1) % cfg.log_every == 0 or last or len(rec) > 5:
                rec["tok_s"] = tok_since / max(now - t_last, 1e-9)
                t_last, tok_since = now, 0
            history.append(rec)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            if bar is not None:
                post = {"stage": stage, "loss": f"{step_loss:.3f}", "lr": f"{lr:.1e}"}
                if "tok_s" in rec:
                    post["tok/s"] = f"{rec['tok_s']:.0f}"
                if "val_sft" in rec:
                    post["val_sft"] = f"{rec['val_sft']['loss']:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or last:
            msd, osd = _full_states(model if cfg.fsdp else raw, opt, cfg.fsdp and W > 1)
            if d.main:
                tok_dir = None if tokenizer_dir is None else Path(tokenizer_dir)
                save_checkpoint(out / "checkpoint", raw, msd, osd, step + 1, cfg, tok_dir, history)
            d.barrier()
    if bar is not None:
        bar.close()
    if d.main and n_params:
        summary = {"parameters": n_params, "steps": cfg.steps, "tokens": cfg.steps * G * L}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out / "checkpoint"


def _rewrite_log(path: Path, history: list[dict]) -> None:
    """The log of a resumed run holds exactly the steps of the checkpoint it resumed from."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, path)


def read_log(out: str | Path) -> list[dict]:
    p = Path(out) / "log.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


# ---- evaluation ----------------------------------------------------------------------------------------
def resolve_model_dir(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (OUT) whose OUT/checkpoint holds one."""
    p = Path(path)
    if not p.exists():
        raise EdgeportError("no such model folder", p)
    if not (p / "config.json").is_file() and (p / "checkpoint" / "config.json").is_file():
        return p / "checkpoint"
    return p


def evaluate_model(
    model_dir: str | Path, n_tasks: int = 100, seed: int = 0, seq_len: int = 512, max_rows: int = 64,
    progress: bool = False, records: list[dict] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Held-out loss / perplexity (held-out builtin text; held-out trajectories, assistant tokens only) and the
    agentic tool-use success on `n_tasks` held-out episodes (edgeport.agent.evaluate, greedy decoding; `records`
    receives each played episode)."""
    from edgeport import agent
    from edgeport import data as D
    from edgeport.checkpoint import load_model
    from edgeport.tokenizer import load_tokenizer
    from runtimes.torch_ref import TorchRef

    folder = resolve_model_dir(model_dir)
    model = load_model(folder)
    tok = load_tokenizer(folder)
    if tok.vocab_size > model.config.vocab_size:
        raise EdgeportError(
            f"tokenizer has {tok.vocab_size} tokens, the model only {model.config.vocab_size}", folder
        )
    seq_len = min(seq_len, model.config.max_position_embeddings)
    episodes = D.generate_episodes(n_tasks, seed=seed + 1, split="eval")
    sets = {
        "val_text": D.pack(
            [D.encode_example(tok, t, "text") for t in D.builtin_text("val")], seq_len, tok.eos_id
        ),
        "val_sft": D.pack([D.encode_example(tok, e, "sft") for e in episodes], seq_len, tok.eos_id),
    }
    out: dict[str, Any] = {"model": str(folder), "parameters": model.num_parameters()}
    with torch.no_grad():
        for name, packed in sets.items():
            r = held_out_loss(model, packed, max_rows, 8, Dist(), contextlib.nullcontext())
            out[name] = r
    rt = TorchRef(folder, absorbed=True, model=model)  # the one token stream every runtime has
    out["agent"] = _agent_figures(agent.runtime_stream(rt), tok, episodes, model.config.max_position_embeddings,
                                  progress, records)  # fmt: skip
    return out


def _agent_figures(
    generate: Any, tok: Any, episodes: list[Any], max_context: int, progress: bool, records: list[dict] | None
) -> dict[str, Any]:
    """agent.evaluate's figures (without its chance note) plus the seconds it took."""
    from edgeport import agent

    t0 = time.perf_counter()
    res = agent.evaluate(generate, tok, episodes, max_context=max_context, progress=progress, records=records)
    res["seconds"] = time.perf_counter() - t0
    return {k: v for k, v in res.items() if k != "chance"}


def evaluate_artifact(
    path: str | Path,
    n_tasks: int = 210,
    seed: int = 0,
    progress: bool = False,
    records: list[dict] | None = None,
) -> dict[str, Any]:
    """evaluate_model's tool-use success for an exported artifact (a .gguf on llama.cpp, an ONNX export folder on
    onnxruntime): the same held-out episodes and scoring, decoded by the runtime a user runs it on."""
    from edgeport import data as D
    from edgeport.chat_cli import open_engine

    engine = open_engine(path)
    try:
        episodes = D.generate_episodes(n_tasks, seed=seed + 1, split="eval")
        figures = _agent_figures(
            engine.generate, engine.tokenizer, episodes, engine.context_length, progress, records
        )
    finally:
        engine.close()
    return {"model": str(path), "runtime": engine.name, "agent": figures}


def main(argv: list[str] | None = None) -> None:
    """`python -m edgeport.trainer CONFIG.json` (also under torchrun): train from a JSON TrainConfig."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = TrainConfig.from_dict(json.loads(Path(argv[0]).read_text()))
    try:
        train(cfg)
    except EdgeportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
