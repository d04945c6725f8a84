"""How device pools are named in reports: 'cuda' reads 'GPU' and its columns start 'gpu_'."""

from __future__ import annotations

import re

from bench_protocol.spec import pool_kind

MODEL_NAMES = {"distilbert": "DistilBERT", "bert": "BERT", "roberta": "RoBERTa", "gpt2": "GPT-2",
               "albert": "ALBERT", "electra": "ELECTRA", "deberta": "DeBERTa", "t5": "T5", "llama": "Llama"}


def column_prefix(pool: str) -> str:
    """'cpu' -> 'cpu', 'cuda' -> 'gpu', 'cuda:1' -> 'gpu1', 'cpu-1t' -> 'cpu_1t'."""
    m = re.fullmatch(r"cuda(?::(\d+))?", pool)
    if m:
        return "gpu" + (m.group(1) or "")
    return re.sub(r"[^a-z0-9]+", "_", pool.lower())


def display_name(pool: str) -> str:
    """'cpu' -> 'CPU', 'cuda' -> 'GPU', 'cuda:1' -> 'GPU 1', 'cpu-1t' -> 'CPU-1T'."""
    m = re.fullmatch(r"cuda(?::(\d+))?", pool)
    if m:
        return "GPU" + (f" {m.group(1)}" if m.group(1) else "")
    return pool.upper()


def is_gpu_pool(pool: str) -> bool:
    return pool_kind(pool) == "cuda"


def model_display(model_type: str | None, model: str) -> str:
    if model_type:
        return MODEL_NAMES.get(model_type, model_type.replace("_", " ").title())
    return model.rstrip("/").split("/")[-1]
