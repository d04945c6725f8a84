"""Model loading: a Hugging Face id or a local directory through ``from_pretrained``.

``weights``: pretrained (the real weights or an error), random (the same architecture built
from its config: same compute, no download), auto (pretrained when the weights can be had —
local directory, cache or hub — else random, with a warning). The record says which was
measured. ``trust_remote_code`` is always off: a task can never switch it on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench_protocol.errors import SpecError
from bench_protocol.model_config import bundled_config_dir, looks_like_path
from bench_protocol.spec import HF_ID_RE, ModelRef

log = logging.getLogger("benchctl.models")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class ModelNotFound(Exception):
    """No config (and so no architecture) could be found for a model."""


class WeightsUnavailable(Exception):
    """weights=pretrained, but the weights cannot be had."""


@dataclass
class LoadedModel:
    model: object
    config: object
    weights: str  # "pretrained" or "random": what is actually measured
    source: str  # where it came from: a directory, the cache/hub, the bundled config
    load_s: float
    warning: str | None
    tokenizer_source: str | None

    def identity(self) -> str:
        """What the weights are, for caches of artefacts derived from them (ONNX exports): a local
        directory's weight files by size and time, else where they came from (random weights
        are seeded, so the same everywhere)."""
        folder = Path(self.source)
        if folder.is_dir():
            stats = [(f, (folder / f).stat()) for f in WEIGHT_FILES if (folder / f).is_file()]
            return ";".join(f"{f}:{st.st_size}:{st.st_mtime_ns}" for f, st in stats) or "no weight files"
        return self.source

    def info(self, name: str) -> dict:
        cfg = self.config
        return {
            "model": name,
            "model_type": getattr(cfg, "model_type", None),
            "architecture": type(self.model).__name__,
            "hidden_size": getattr(cfg, "hidden_size", None),
            "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
            "num_attention_heads": getattr(cfg, "num_attention_heads", None),
            "max_position_embeddings": getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None),
            "vocab_size": getattr(cfg, "vocab_size", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights": self.weights,
            "weights_source": self.source,
            "load_s": self.load_s,
            "warning": self.warning,
        }


def resolve_local_dir(model: str, allowed_dirs: list[Path] | None) -> Path | None:
    """The model's directory if it names one. With an allow-list (a task from the queue), a
    path outside every allowed directory is refused, symlinks resolved first."""
    if not looks_like_path(model):
        if not HF_ID_RE.match(model):
            raise SpecError(f"model {model!r} is neither a Hugging Face id nor a local directory")
        return None
    path = Path(model).expanduser().resolve()
    if allowed_dirs is not None:
        if not any(path == d or d in path.parents for d in allowed_dirs):
            raise SpecError(f"model path {model} is outside this worker's allowed models directories")
    if not path.is_dir():
        raise SpecError(f"model directory {model} does not exist")
    if not (path / "config.json").is_file():
        raise SpecError(f"model directory {model} has no config.json")
    return path


def _auto_classes(task: str):
    """(the head to load, the fallback): a classifier falls back to the bare model; a generate
    cell needs a causal LM head and has no fallback."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "generate":
        return AutoModelForCausalLM, None
    return AutoModelForSequenceClassification, AutoModel


def _from_config(config, task: str):
    """The same architecture with random weights (the task's head where it has one)."""
    import torch

    head, base = _auto_classes(task)
    torch.manual_seed(0)  # the same random weights every time
    try:
        return head.from_config(config, trust_remote_code=False)
    except ValueError as exc:
        if base is None:
            raise SpecError(f"model type {getattr(config, 'model_type', '?')} has no causal LM head: it cannot generate") from exc
        return base.from_config(config, trust_remote_code=False)


def _from_pretrained(source: str, task: str, **kwargs):
    head, base = _auto_classes(task)
    try:
        return head.from_pretrained(source, trust_remote_code=False, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        if base is None:
            raise SpecError(f"model {source} has no causal LM head: it cannot generate") from None
        return base.from_pretrained(source, trust_remote_code=False, **kwargs)


_hub_reachable: bool | None = None


def _hub_offline() -> bool:
    """True when the hub is switched off or cannot be reached. One quick TCP probe per process
    spares every cell the hub client's long retries on a host with no network."""
    global _hub_reachable
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    if _hub_reachable is None:
        endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        try:
            socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
            _hub_reachable = True
        except OSError:
            _hub_reachable = False
            log.info("Hugging Face Hub at %s unreachable: using the local cache and bundled configs", endpoint.hostname)
    return not _hub_reachable


def load_model(ref: ModelRef, allowed_dirs: list[Path] | None = None, task: str = "classify") -> LoadedModel:
    from transformers import AutoConfig

    t0 = time.perf_counter()
    local = resolve_local_dir(ref.model, allowed_dirs)
    tried: list[str] = []
    warning = None

    if local is not None:
        config = AutoConfig.from_pretrained(str(local), trust_remote_code=False)
        has_weights = any((local / f).is_file() for f in WEIGHT_FILES)
        tok = str(local) if (local / "tokenizer_config.json").is_file() or (local / "vocab.txt").is_file() else None
        if ref.weights != "random" and has_weights:
            model = _from_pretrained(str(local), task)
            return LoadedModel(model, model.config, "pretrained", str(local), time.perf_counter() - t0, None, tok)
        if ref.weights == "pretrained":
            raise WeightsUnavailable(f"model directory {local} has no weights ({', '.join(WEIGHT_FILES)})")
        if ref.weights == "auto":
            warning = f"no weights in {local}: measuring random weights of the same architecture"
            log.warning(warning)
        return LoadedModel(_from_config(config, task), config, "random", str(local), time.perf_counter() - t0, warning, tok)

    # A hub id: the local cache first, then the hub (unless offline), then a bundled config.
    if ref.weights != "random":
        attempts = [("cache", {"local_files_only": True})]
        if not _hub_offline():
            attempts.append(("hub", {}))
        else:
            tried.append("hub: unreachable or HF_HUB_OFFLINE set")
        for where, kwargs in attempts:
            try:
                model = _from_pretrained(ref.model, task, **kwargs)
                return LoadedModel(model, model.config, "pretrained", where, time.perf_counter() - t0, None, ref.model)
            except (OSError, ValueError) as exc:
                tried.append(f"{where}: {str(exc).splitlines()[0][:160]}")
        if ref.weights == "pretrained":
            raise WeightsUnavailable(f"pretrained weights of {ref.model} not found ({'; '.join(tried)})")

    config, source = None, None
    for where, kwargs in [("cache", {"local_files_only": True})] + ([] if _hub_offline() else [("hub", {})]):
        try:
            config, source = AutoConfig.from_pretrained(ref.model, trust_remote_code=False, **kwargs), where
            break
        except (OSError, ValueError) as exc:
            tried.append(f"config from {where}: {str(exc).splitlines()[0][:160]}")
    if _hub_offline():
        tried.append("config from hub: unreachable or HF_HUB_OFFLINE set")
    if config is None:
        bundled = bundled_config_dir(ref.model)
        if bundled is None:
            raise ModelNotFound(f"model {ref.model!r} not found: tried {'; '.join(tried) or 'nothing'}; no bundled config")
        config, source = AutoConfig.from_pretrained(str(bundled), trust_remote_code=False), "bundled config.json"
    if ref.weights == "auto":
        warning = f"pretrained weights of {ref.model} unavailable: measuring random weights from the {source}"
        log.warning(warning)
    return LoadedModel(_from_config(config, task), config, "random", source, time.perf_counter() - t0, warning,
                       ref.model if source != "bundled config.json" else None)
