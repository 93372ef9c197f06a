"""edgeport: train, quantize, export and validate Dense-MLA (Youtu-LLM) models for the edge."""

__version__ = "0.1.0"
