"""onnxruntime-genai runs on the caller's thread count (its own default is one intra-op thread)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# threads of a process that opened OrtGenai(folder, threads=N) and decoded one token (the intra-op pool's
# workers exist from session creation on)
COUNT = """
import os, sys
from runtimes.ort import OrtGenai
rt = OrtGenai(sys.argv[1], threads=int(sys.argv[2]))
rt.generate([1, 2, 3], 1, ())
print(len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_genai_honours_threads(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_genai")
    from edgeport.default_model import default_model_path
    from edgeport.export.onnx import export_onnx

    folder = export_onnx(default_model_path(), tmp_path / "onnx", "int4", mobile=False, progress=False)
    options = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["session_options"]
    assert options["intra_op_num_threads"] == 0  # onnxruntime's default: the physical cores, not genai's one

    def threads(n: int) -> int:
        res = subprocess.run(
            [sys.executable, "-c", COUNT, str(folder), str(n)], capture_output=True, text=True, cwd=ROOT
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return int(res.stdout.split()[-1])

    assert threads(3) - threads(1) == 2  # an intra-op pool of N threads has N - 1 workers
