"""`edgeport validate DIR`: every available runtime x artifact of an export against the fp32 torch reference.

Per (runtime, artifact): teacher-forced logits on fixed held-out ids (max |diff|, KL(ref || runtime), top-1
agreement), greedy decode equality (32 tokens), the runtime's own tokenizer against the HF tokenizer on mixed
text, perplexity on the held-out ids, and tool-use success on held-out agent episodes (tools run for real).
Each precision class has a gate (GATES); a row outside its gate, or a runtime that fails to load or run its
artifact, makes the report fail. Writes report.json, report.md and report.png next to the manifest.

    metrics.py   logits comparison, perplexity, the gates
    run.py       the fixed inputs and the run over every runtime x artifact
    report.py    report.json / .md / .png and the terminal table (one renderer)
The export folder's manifest is edgeport.manifest (shared with `export all` and `bench`).
"""

from edgeport.validate.metrics import GATES, GREEDY_TOKENS, Gate, compare_logits, gate_failures
from edgeport.validate.run import validate

__all__ = ["GATES", "GREEDY_TOKENS", "Gate", "compare_logits", "gate_failures", "validate"]
