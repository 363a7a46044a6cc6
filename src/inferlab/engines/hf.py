"""The HF transformers static-batching baseline (Weeks 4 and 7) as an engine name: the catalog's
``hf`` entry is a variant of vLLM (``base: vllm``: the same environment, whose transformers runs
``tools/hf_static_batch.py``), so its commands and parser are the vLLM adapter's; this class only
lets a record that says ``engine: hf`` find that adapter when it is parsed (records.py)."""

from .vllm import VLLM


class HF(VLLM):
    name = "hf"
