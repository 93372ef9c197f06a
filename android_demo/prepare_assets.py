"""Copy an `edgeport export onnx` folder into the Android app's assets (or any folder to `adb push`).

    python android_demo/prepare_assets.py EXPORT_DIR [--out android_demo/app/src/main/assets/model] [--onnx]

Writes model.ort (or model.onnx with --onnx), genai_config.json (its decoder filename pointed at that file),
tokenizer.json, tokenizer_config.json and edgeport_model.json (file sizes + sha256, latent cache geometry, stop
ids), all at once: the destination is replaced only when everything is written. It checks what the Kotlin/Java
loop needs: genai I/O names present in the graph, float32 or float16 latent halves of genai_config's head_size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "app" / "src" / "main" / "assets" / "model"
APK_ASSET_WARN_BYTES = 150 * 2**20  # bigger models belong on the device (adb push), not inside the APK


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_graph(model_file: Path, cfg: dict) -> dict:
    """The graph's inputs as the on-device loop will feed them; raises EdgeportError on any mismatch."""
    import onnxruntime as ort

    from edgeport.errors import EdgeportError

    dec = cfg["model"]["decoder"]
    sess = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name for o in sess.get_outputs()}
    want_in = [dec["inputs"]["input_ids"]] + [
        dec["inputs"][k] % layer
        for layer in range(dec["num_hidden_layers"])
        for k in ("past_key_names", "past_value_names")
    ]
    want_out = [dec["outputs"]["logits"]] + [
        dec["outputs"][k] % layer
        for layer in range(dec["num_hidden_layers"])
        for k in ("present_key_names", "present_value_names")
    ]
    for name in want_in:
        if name not in inputs:
            raise EdgeportError(f"graph has no input {name} (genai_config.json names it)", model_file)
    for name in want_out:
        if name not in outputs:
            raise EdgeportError(f"graph has no output {name} (genai_config.json names it)", model_file)
    past = inputs[want_in[1]]
    if past.type not in ("tensor(float)", "tensor(float16)"):
        raise EdgeportError(
            f"{past.name} is {past.type}; the app's decoding loop feeds float32 or float16 caches", model_file
        )
    if past.shape[-1] != dec["head_size"] or past.shape[1] != dec["num_key_value_heads"]:
        raise EdgeportError(
            f"{past.name} has shape {past.shape}, genai_config says head_size {dec['head_size']}", model_file
        )
    return {
        name: {"type": i.type, "shape": [d if isinstance(d, int) else str(d) for d in i.shape]}
        for name, i in inputs.items()
    }


def prepare_assets(export_dir: str | Path, out: str | Path = DEFAULT_OUT, use_onnx: bool = False) -> Path:
    from edgeport.errors import EdgeportError
    from edgeport.io import atomic_dir

    src, out = Path(export_dir), Path(out)
    if not (src / "genai_config.json").is_file():
        raise EdgeportError("not an ONNX export folder (no genai_config.json)", src)
    model_name = "model.onnx" if use_onnx else "model.ort"
    for name in (model_name, "tokenizer.json"):
        if not (src / name).is_file():
            hint = " (export with ORT Mobile conversion on, or pass --onnx)" if name == "model.ort" else ""
            raise EdgeportError(f"missing {name}{hint}", src)
    if use_onnx and (src / "model.onnx.data").is_file():
        raise EdgeportError("model.onnx keeps its weights in model.onnx.data; ship model.ort instead", src)
    try:
        cfg = json.loads((src / "genai_config.json").read_text())
        cfg["model"]["decoder"]["filename"] = model_name
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise EdgeportError(f"unreadable genai_config.json ({e})", src / "genai_config.json") from None
    inputs = check_graph(src / model_name, cfg)
    files = [model_name, "tokenizer.json"] + [n for n in ("tokenizer_config.json",) if (src / n).is_file()]
    dec = cfg["model"]["decoder"]
    with atomic_dir(out) as tmp:
        for name in files:
            shutil.copyfile(src / name, tmp / name)
        (tmp / "genai_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        manifest = {
            "source": str(src.resolve()),
            "model": model_name,
            "files": {
                n: {"bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)}
                for n in files + ["genai_config.json"]
            },
            "latent_cache": {
                "layers": dec["num_hidden_layers"],
                "kv_heads": dec["num_key_value_heads"],
                "half_width": dec["head_size"],
                "floats_per_token": 2
                * dec["num_hidden_layers"]
                * dec["num_key_value_heads"]
                * dec["head_size"],
                "type": inputs[dec["inputs"]["past_key_names"] % 0]["type"],
            },
            "eos_token_id": cfg["model"]["eos_token_id"],
            "context_length": cfg["model"]["context_length"],
            "inputs": inputs,
        }
        (tmp / "edgeport_model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    size = (out / model_name).stat().st_size
    if size > APK_ASSET_WARN_BYTES:
        print(
            f"note: {model_name} is {size / 2**20:.0f} MiB; push it to the phone instead of bundling it "
            "(android_demo/README.md, 'adb push' route)",
            file=sys.stderr,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--onnx", action="store_true", help="ship model.onnx instead of the ORT-format model.ort")
    args = ap.parse_args(argv)
    from edgeport.errors import EdgeportError

    try:
        out = prepare_assets(args.export_dir, args.out, args.onnx)
    except EdgeportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
