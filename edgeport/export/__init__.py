"""Exporters: `gguf` (llama.cpp, arch deepseek2) and `onnx` (onnxruntime / genai / ORT Mobile).

Each exporter is its own module and is imported lazily by the CLI, so importing this package is cheap.
"""
