"""Reading a model's config.json without transformers: the limits a controller checks early.

The default model's config.json is bundled, so it runs with no network (random weights when
its weights cannot be had) and its limits are known before any worker sees the spec.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import SpecError
from .spec import DEFAULT_GENERATIVE_MODEL, DEFAULT_MODEL, TASKS

BUNDLED_DIR = Path(__file__).parent / "configs"
# The bundled configs and the hub ids they answer to.
BUNDLED = {DEFAULT_MODEL: (DEFAULT_MODEL, f"distilbert/{DEFAULT_MODEL}"),
           DEFAULT_GENERATIVE_MODEL: (DEFAULT_GENERATIVE_MODEL, f"openai-community/{DEFAULT_GENERATIVE_MODEL}")}
# Architectures that generate text: a head that predicts the next token.
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def bundled_config_dir(model: str) -> Path | None:
    """The bundled config folder for a known model id ('org/name' or 'name'), if any."""
    name = model.rstrip("/").split("/")[-1]
    path = BUNDLED_DIR / name
    return path if (path / "config.json").is_file() and model in BUNDLED.get(name, ()) else None


def looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().is_dir()


def read_config(model: str) -> dict | None:
    """config.json of a local directory or a bundled id; None when only a hub could tell."""
    if looks_like_path(model):
        directory = Path(model).expanduser()
        if not directory.is_dir():
            raise SpecError(f"model directory {model} does not exist")
        cfg = directory / "config.json"
        if not cfg.is_file():
            raise SpecError(f"model directory {model} has no config.json")
    else:
        bundled = bundled_config_dir(model)
        if bundled is None:
            return None
        cfg = bundled / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"config.json of model {model} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"config.json of model {model} is not a JSON object")
    return data


def max_positions(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_seq_lens(model: str, seq_lens: list[int], new_tokens: int = 0) -> None:
    """Refuse a sequence length (a prompt plus the tokens generated after it) above the model's
    maximum before anything is queued or run."""
    config = read_config(model)
    if config is None:
        return
    limit = max_positions(config)
    too_long = [s for s in seq_lens if limit is not None and s + new_tokens > limit]
    if too_long and new_tokens:
        raise SpecError(f"prompt length {too_long[0]} plus {new_tokens} new tokens is above the maximum {limit} "
                        f"positions of model {model}")
    if too_long:
        raise SpecError(f"sequence length {too_long[0]} is above the maximum {limit} of model {model}")


def is_causal_lm(config: dict) -> bool:
    return any(str(a).endswith(CAUSAL_SUFFIXES) for a in config.get("architectures") or [])


def resolve_task(model: str, task: str) -> str:
    """'auto' -> 'generate' for a causal LM whose config is readable here, else 'classify'."""
    if task != "auto":
        if task not in TASKS:
            raise SpecError(f"unknown task {task!r}: use auto, {', '.join(TASKS)}")
        return task
    config = read_config(model)
    return "generate" if config is not None and is_causal_lm(config) else "classify"


__all__ = ["DEFAULT_MODEL", "read_config", "max_positions", "check_seq_lens", "bundled_config_dir", "looks_like_path",
           "resolve_task", "is_causal_lm"]
