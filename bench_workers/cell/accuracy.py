"""A cell's outputs against an fp32 eager reference on the same worker, inputs and weights.

The fastest way to run a model is the fastest that still gives its answers: a runtime or dtype
that moves the logits is measured, and this says by how much. Computed after the timed window.
The reference is the fp32 model run eagerly (for an fp32 cell, its own model; otherwise a second
fp32 copy of the same weights, loaded once per shape and kept with the model cache).
Classification: the largest absolute logit difference and the share of equal top-1 labels.
Generation: the share of greedy tokens equal to the reference's over the first
``TOKENS_COMPARED`` new tokens. The thresholds live in the protocol (bench_protocol/accuracy.py).
"""

from __future__ import annotations

from bench_protocol.accuracy import TOKENS_COMPARED


def as_tensor(torch, output):
    """Logits (or generated ids) of an output of any runtime, as a CPU tensor."""
    if output is None:
        return None
    if hasattr(output, "logits"):
        output = output.logits
    elif isinstance(output, (tuple, list)):
        output = output[0]
    if hasattr(output, "numpy") and not hasattr(output, "detach"):  # an ORT OrtValue
        output = torch.from_numpy(output.numpy())
    if hasattr(output, "sequences"):
        output = output.sequences
    return output.detach().cpu() if hasattr(output, "detach") else None


def compare(torch, output, reference, task: str, prompt_len: int) -> dict:
    out, ref = as_tensor(torch, output), as_tensor(torch, reference)
    if out is None or ref is None or out.shape[0] != ref.shape[0]:
        return {"available": False, "reason": "no comparable output"}
    if task == "generate":
        new_out, new_ref = out[:, prompt_len:prompt_len + TOKENS_COMPARED], ref[:, prompt_len:prompt_len + TOKENS_COMPARED]
        n = min(new_out.shape[1], new_ref.shape[1])
        agree = (new_out[:, :n] == new_ref[:, :n]).float().mean().item() if n else None
        return {"available": agree is not None, "token_agreement": agree, "tokens_compared": n}
    out, ref = out.float(), ref.float()
    return {"available": True, "max_abs_diff": (out - ref).abs().max().item(),
            "top1_agreement": (out.argmax(-1) == ref.argmax(-1)).float().mean().item()}
