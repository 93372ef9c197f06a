"""Youtu-LLM (Dense MLA + SwiGLU) in one file: config, modules, both attention paths, latent KV cache.

Tensor names follow Hugging Face `YoutuForCausalLM` exactly, so `state_dict()` is an HF checkpoint.

Attention, per layer (x is the pre-normed hidden state):
    q   = q_b(rms(q_a(x)))            -> per head [q_nope (dn) | q_rope (dr)]
    ckv = kv_a_proj_with_mqa(x)       -> [latent (r) | k_rope (dr)]
    kv  = kv_b(rms(latent))           -> per head [k_nope (dn) | v (dv)]
Expanded path: materialize K = [k_nope | k_rope] and V per head (training, long prefill).
Absorbed path: fold W_UK into the query and W_UV after attention, so attention runs against the latent
cache [rms(latent) | rope(k_rope)] of r + dr values per token per layer (decode).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class YoutuConfig:
    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 32
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    q_lora_rank: int | None = 1536
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1e-6
    rope_parameters: dict[str, Any] = field(
        default_factory=lambda: {"rope_theta": 1600000.0, "rope_type": "default"}
    )
    rope_interleave: bool = True
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    initializer_range: float | None = None
    bos_token_id: int | None = 128000
    eos_token_id: int | list[int] | None = 128001
    pad_token_id: int | None = None
    dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.initializer_range is None:
            self.initializer_range = 2.0 / math.sqrt(5.0 * self.hidden_size)

    # ---- derived -------------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def rope_theta(self) -> float:
        return float(self.rope_parameters.get("rope_theta", 10000.0))

    @property
    def latent_dim(self) -> int:
        """Values cached per token per layer by the absorbed path: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        scale = self.qk_head_dim**-0.5
        rp = self.rope_parameters
        if rp.get("rope_type", "default") != "default" and rp.get("mscale_all_dim"):
            factor = float(rp.get("factor", 1.0))
            if factor > 1:
                m = 0.1 * float(rp["mscale_all_dim"]) * math.log(factor) + 1.0
                scale *= m * m
        return scale

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> dict[str, int]:
        """KV-cache bytes per token over all layers: latent (absorbed) vs expanded (per-head K and V)."""
        expanded = self.num_attention_heads * (self.qk_head_dim + self.v_head_dim)
        return {
            "latent": self.num_hidden_layers * self.latent_dim * bytes_per_value,
            "expanded": self.num_hidden_layers * expanded * bytes_per_value,
        }

    # ---- (de)serialization with the exact Hugging Face keys -------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> YoutuConfig:
        """Read `config.json` of `model_type` "youtu", or the legacy "youtu_llm" spelling."""
        d = dict(d)
        model_type = d.get("model_type", "youtu")
        if model_type not in ("youtu", "youtu_llm", "deepseek_v2", "deepseek_v3"):
            raise ValueError(f"unsupported model_type {model_type!r} (expected 'youtu')")
        if "rope_parameters" not in d or d["rope_parameters"] is None:
            rp: dict[str, Any] = {"rope_theta": float(d.get("rope_theta", 10000.0)), "rope_type": "default"}
            scaling = d.get("rope_scaling") or {}
            stype = scaling.get("rope_type", scaling.get("type", "default"))
            identity_yarn = stype == "yarn" and float(scaling.get("factor", 1.0)) == 1.0
            if stype not in ("default", None) and not identity_yarn:
                raise ValueError(f"unsupported rope_scaling {scaling!r}: only identity scaling is supported")
            d["rope_parameters"] = rp
        if "dtype" not in d and "torch_dtype" in d:
            d["dtype"] = d["torch_dtype"]
        if d.get("rope_interleave") is None and model_type in ("deepseek_v2", "deepseek_v3"):
            d["rope_interleave"] = bool(d.get("rope_traditional", True))
        names = {f.name for f in fields(cls)}
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"missing config key(s): {', '.join(missing)}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.v_head_dim is None:
            cfg.v_head_dim = cfg.qk_nope_head_dim
        if cfg.rope_interleave is None:
            cfg.rope_interleave = True
        if cfg.hidden_act != "silu":
            raise ValueError(f"unsupported hidden_act {cfg.hidden_act!r} (expected 'silu')")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"architectures": ["YoutuForCausalLM"], "model_type": "youtu", **d}
        d["num_key_value_heads"] = self.num_key_value_heads or self.num_attention_heads
        d["attention_dropout"] = 0.0
        d["use_cache"] = True
        return d


PRESETS: dict[str, dict[str, Any]] = {
    # The real Youtu-LLM-2B shape (1,961,560,064 parameters).
    "youtu-2b": {},
    # The embedded default model: every matrix dimension a multiple of 32 so all of it quantizes in blocks.
    "tiny": dict(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=128,
        kv_lora_rank=64,
        qk_nope_head_dim=32,
        qk_rope_head_dim=32,
        v_head_dim=32,
        max_position_embeddings=2048,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        dtype="float32",
    ),
}


def preset(name: str, **overrides: Any) -> YoutuConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return YoutuConfig(**{**PRESETS[name], **overrides})


# ---- modules -------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape [*positions.shape, dim/2] for rotating pairs with inv_freq = theta^(-2i/dim)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleave: bool) -> torch.Tensor:
    """Rotate x [..., S, dim] by position. interleave=True rotates consecutive pairs (x0,x1),(x2,x3).. in place
    (GPT-J / ggml NORM / ORT interleaved); False rotates (x_i, x_{i+dim/2}) (rotate_half / NEOX)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if interleave:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class LatentCache:
    """The MLA latent KV cache: per layer [B, T, kv_lora_rank + qk_rope_head_dim] = [rms(latent) | rope(k_rope)]."""

    def __init__(self, num_layers: int) -> None:
        self.layers: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        t = self.layers[0]
        return 0 if t is None else t.shape[1]

    def update(self, layer: int, new: torch.Tensor) -> torch.Tensor:
        old = self.layers[layer]
        self.layers[layer] = new if old is None else torch.cat((old, new), dim=1)
        return self.layers[layer]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.layers if t is not None)


class MLAttention(nn.Module):
    def __init__(self, cfg: YoutuConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, bias = cfg.num_attention_heads, cfg.attention_bias
        if cfg.q_lora_rank is None:
            self.q_proj = nn.Linear(cfg.hidden_size, h * cfg.qk_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(cfg.hidden_size, cfg.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank)  # HF builds it with the default eps 1e-6
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, h * cfg.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(cfg.hidden_size, cfg.latent_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, h * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(h * cfg.v_head_dim, cfg.hidden_size, bias=bias)

    def kv_b_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK [H, dn, r] and W_UV [H, dv, r], the two halves of kv_b per head."""
        c = self.cfg
        w = self.kv_b_proj.weight.view(
            c.num_attention_heads, c.qk_nope_head_dim + c.v_head_dim, c.kv_lora_rank
        )
        return w[:, : c.qk_nope_head_dim], w[:, c.qk_nope_head_dim :]

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: LatentCache | None = None,
        layer: int = 0,
        absorbed: bool = False,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.cfg
        B, S, _ = x.shape
        H, dn, dr, r = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.kv_lora_rank
        q = self.q_proj(x) if c.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(B, S, H, c.qk_head_dim).transpose(1, 2)
        q_nope, q_rope = q.split([dn, dr], dim=-1)
        q_rope = apply_rope(q_rope, cos[:, None], sin[:, None], c.rope_interleave)
        latent, k_rope = self.kv_a_proj_with_mqa(x).split([r, dr], dim=-1)
        latent = self.kv_a_layernorm(latent)
        k_rope = apply_rope(k_rope, cos, sin, c.rope_interleave)
        kv = torch.cat((latent, k_rope), dim=-1)  # [B, S, r + dr]: what the latent cache stores
        if cache is not None:
            kv = cache.update(layer, kv)
        T = kv.shape[1]
        latent, k_rope = kv.split([r, dr], dim=-1)

        mask = None
        if S > 1 or key_mask is not None:
            past = T - S
            causal = torch.ones(S, T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            mask = (
                causal[None, None]
                if key_mask is None
                else causal[None, None] & key_mask[:, None, None, :T].bool()
            )

        if absorbed:
            w_uk, w_uv = self.kv_b_split()
            q_lat = torch.einsum("bhsd,hdr->bhsr", q_nope, w_uk)
            scores = q_lat @ latent[:, None].transpose(-1, -2) + q_rope @ k_rope[:, None].transpose(-1, -2)
            scores = scores.float() * c.softmax_scale
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            p = scores.softmax(dim=-1).to(q.dtype)
            o = torch.einsum("bhsr,hvr->bhsv", p @ latent[:, None], w_uv)
        else:
            kvx = self.kv_b_proj(latent).view(B, T, H, dn + c.v_head_dim).transpose(1, 2)
            k_nope, v = kvx.split([dn, c.v_head_dim], dim=-1)
            k = torch.cat((k_nope, k_rope[:, None].expand(B, H, T, dr)), dim=-1)
            qf = torch.cat((q_nope, q_rope), dim=-1)
            if mask is None:
                o = F.scaled_dot_product_attention(qf, k, v, scale=c.softmax_scale, is_causal=S > 1)
            else:
                o = F.scaled_dot_product_attention(qf, k, v, attn_mask=mask, scale=c.softmax_scale)
        return self.o_proj(o.transpose(1, 2).reshape(B, S, H * c.v_head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: YoutuConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: YoutuConfig) -> None:
        super().__init__()
        self.self_attn = MLAttention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, **attn_kw: Any) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, **attn_kw)
        return x + self.mlp(self.post_attention_layernorm(x))


class YoutuModel(nn.Module):
    def __init__(self, cfg: YoutuConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class YoutuForCausalLM(nn.Module):
    """Youtu-LLM causal LM. `forward` without a cache runs the expanded path; with a cache, the absorbed one."""

    def __init__(self, cfg: YoutuConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = YoutuModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        g = None if seed is None else torch.Generator().manual_seed(seed)
        std = self.config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            elif name == "model.embed_tokens.weight":
                p.normal_(0.0, 2 * std, generator=g)
            else:
                p.normal_(0.0, std, generator=g)
        self.tie_weights()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a tied weight is counted once

    def new_cache(self) -> LatentCache:
        return LatentCache(self.config.num_hidden_layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        cache: LatentCache | None = None,
        absorbed: bool | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, S, V] for input_ids [B, S]. `attention_mask` [B, past + S] masks padded keys."""
        B, S = input_ids.shape
        if position_ids is None:
            past = 0 if cache is None else cache.length
            position_ids = torch.arange(past, past + S, device=input_ids.device)[None].expand(B, S)
        cos, sin = rope_cos_sin(position_ids, self.config.qk_rope_head_dim, self.config.rope_theta)
        absorbed = cache is not None if absorbed is None else absorbed
        x = self.model.embed_tokens(input_ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, cache=cache, layer=i, absorbed=absorbed, key_mask=attention_mask)
        return self.lm_head(self.model.norm(x))
