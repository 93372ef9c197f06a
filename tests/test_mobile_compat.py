"""The Android app's onnxruntime runs what edgeport exports: a tested contract.

android_demo/gradle.properties names the onnxruntime-android version the app ships (`edgeport.onnxruntimeVersion`,
read by app/build.gradle.kts). This test installs the desktop wheel of exactly that version into a separate venv
(created once, cached under ~/.cache/edgeport or $XDG_CACHE_HOME/edgeport; pip needs the package index only the
first time), then runs every precision of a default-model export there, model.onnx and model.ort (the file the app
loads), through a prefill and a few latent-cache decode steps, and compares the logits with the current runtime's.
The Android AAR and the desktop wheel of one release are built from the same sources and kernels (the phone's
ARM kernels differ from x86 ones only in rounding, which `edgeport validate`'s tolerances already allow).
When this fails after an onnxruntime upgrade, raise the pin: model.ort loads on the version that wrote it and newer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN_FILE = ROOT / "android_demo" / "gradle.properties"
PIN_KEY = "edgeport.onnxruntimeVersion"
# max |logit difference| / max |logit| between the pinned and the current onnxruntime, per export precision
TOL = {"fp32": 1e-5, "fp16": 1e-4, "int8": 1e-3, "int4": 1e-3}

# Runs in both pythons (pinned venv and current): prefill `prompt`, then feed one token at a time through the latent
# cache (present.* -> past_key_values.*), for model.onnx and model.ort; saves every step's logits and the tokens fed.
# `steps` is a list of tokens to feed (teacher forcing) or a count of greedy steps (model.onnx's argmax).
CHECK = r"""
import json, sys
import numpy as np
import onnxruntime as ort

folder, prompt, steps, out = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
DT = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
res = {"version": np.array(ort.__version__)}
for name in ("model.onnx", "model.ort"):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if name.endswith(".ort"):
        so.add_session_config_entry("session.load_model_format", "ORT")
    sess = ort.InferenceSession(f"{folder}/{name}", so, providers=["CPUExecutionProvider"])
    past = {i.name: np.zeros((1, 1, 0, i.shape[-1]), DT[i.type]) for i in sess.get_inputs()
            if i.name.startswith("past_key_values.")}
    outs = [o.name for o in sess.get_outputs()]
    logits, n, ids, fed = [], 0, prompt, list(steps) if isinstance(steps, list) else []
    while True:
        feed = {"input_ids": np.array([ids], np.int64),
                "attention_mask": np.ones((1, n + len(ids)), np.int64),
                "position_ids": np.arange(n, n + len(ids), dtype=np.int64)[None], **past}
        got = dict(zip(outs, sess.run(outs, feed)))
        past = {k: got[k.replace("past_key_values.", "present.")] for k in past}
        logits.append(got["logits"][0].astype(np.float32))
        n += len(ids)
        if isinstance(steps, int) and len(fed) < steps:
            fed.append(int(logits[-1][-1].argmax()))
        if n - len(prompt) == len(fed):
            break
        ids = [fed[n - len(prompt)]]
    res[name] = np.concatenate(logits)
    res["tokens"], steps = np.array(fed, np.int64), fed  # model.ort is fed model.onnx's tokens
np.savez(out, **res)
"""


def pinned_version() -> str:
    m = re.search(rf"^{re.escape(PIN_KEY)}=(\S+)$", PIN_FILE.read_text(), re.M)
    assert m, f"{PIN_FILE} names no {PIN_KEY}"
    return m.group(1)


def test_app_build_reads_the_pin() -> None:
    """The app's Gradle build takes the version from the one constant, not from a literal of its own."""
    gradle = (ROOT / "android_demo" / "app" / "build.gradle.kts").read_text()
    assert f'gradleProperty("{PIN_KEY}")' in gradle
    assert not re.search(r"onnxruntime-android:\d", gradle)


@pytest.fixture(scope="module")
def pinned_python() -> Path:
    """python of a venv holding exactly the pinned onnxruntime (and numpy); built once, then reused."""
    version = pinned_version()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeport"
    venv = cache / f"venv-py{sys.version_info.major}{sys.version_info.minor}-onnxruntime-{version}"
    if not (venv / "bin" / "python").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=venv.name + ".partial-", dir=cache))
        try:
            subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True)
            pkgs = [f"onnxruntime=={version}", "numpy"]
            res = subprocess.run(
                [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", *pkgs],
                capture_output=True,
                text=True,
            )
            assert res.returncode == 0, f"pip could not install {pkgs}:\n{res.stderr[-2000:]}"
            # renamed into place only when complete (python -m pip / -c do not depend on the venv's path);
            # a concurrent run that got there first wins and ours is dropped
            with contextlib.suppress(OSError):
                tmp.rename(venv)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def default_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default model exported at every precision (model.onnx + model.ort each)."""
    from edgeport.default_model import default_model_path
    from edgeport.export.onnx import PRECISIONS, export_onnx

    root = tmp_path_factory.mktemp("mobile-compat")
    return {p: export_onnx(default_model_path(), root / p, p, progress=False) for p in PRECISIONS}


def _run(
    python: Path, folder: Path, prompt: list[int], steps: list[int] | int, out: Path
) -> dict[str, np.ndarray]:
    res = subprocess.run(
        [str(python), "-c", CHECK, str(folder), json.dumps(prompt), json.dumps(steps), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, f"{python}: {folder}: {res.stderr[-3000:]}"
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_exports_run_on_the_pinned_onnxruntime(
    pinned_python: Path, default_exports: dict[str, Path], tmp_path: Path
) -> None:
    from edgeport.tokenizer import load_tokenizer

    version = pinned_version()
    for precision, folder in default_exports.items():
        prompt = load_tokenizer(folder).encode("Use the calculator: what is 17 * 23?")
        now = _run(Path(sys.executable), folder, prompt, 4, tmp_path / f"{precision}-now.npz")
        steps = now["tokens"].tolist()
        pinned = _run(pinned_python, folder, prompt, steps, tmp_path / f"{precision}-pinned.npz")
        assert str(pinned["version"]) == version
        for name in ("model.onnx", "model.ort"):
            a, b = now[name], pinned[name]
            assert a.shape == b.shape == (len(prompt) + len(steps), a.shape[-1]), (precision, name)
            err = float(np.abs(a - b).max() / (np.abs(a).max() + 1e-6))
            assert err < TOL[precision], f"{precision} {name}: onnxruntime {version} differs by {err:.2e}"
            assert (a.argmax(-1) == b.argmax(-1)).all(), (precision, name)
