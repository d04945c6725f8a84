"""A generate cell: ``model.generate`` with a logits processor as the clock.

Each new token's logits pass through the processor once, right after the forward pass that
made them, so one mark per token lands in the real generate loop without changing it: the
start mark to the first tick is the prefill (time to first token), each later interval one
decode step. Exactly N new tokens (greedy; ``min_new_tokens`` = ``max_new_tokens`` = N, so an
end-of-sequence token does not stop it): 1 token from the prefill and N - 1 decode steps.
CUDA: the marks are events recorded on the stream and read after one synchronize at the end.
"""

from __future__ import annotations

import time

from .stats import latency_stats


class StepMarks:
    """The marks of each generate call: its start and one per new token."""

    def __init__(self, torch, device) -> None:
        self._cuda = device.type == "cuda"
        self._torch = torch
        self._device = device
        self.calls: list[list] = []
        self.on_first = None  # called as a call's first token exists (serving: its time to first token)

    def _mark(self):
        if self._cuda:
            ev = self._torch.cuda.Event(enable_timing=True)
            ev.record(self._torch.cuda.current_stream(self._device))  # the cell's device, not device 0
            return ev
        return time.perf_counter_ns()

    def begin(self) -> None:
        self.calls.append([self._mark()])

    def tick(self) -> None:
        self.calls[-1].append(self._mark())
        if self.on_first is not None and len(self.calls[-1]) == 2:
            self.on_first()

    def reset(self) -> None:
        self.calls = []

    def intervals_ms(self) -> list[list[float]]:
        """Per call: [prefill ms, decode step ms, ...]."""
        if self._cuda:
            self._torch.cuda.synchronize(self._device)
            return [[a.elapsed_time(b) for a, b in zip(c, c[1:])] for c in self.calls]
        return [[(b - a) / 1e6 for a, b in zip(c, c[1:])] for c in self.calls]


def make_call(model, feeds: dict, new_tokens: int, marks: StepMarks):
    """The call the loop times: one greedy generate of exactly ``new_tokens`` tokens."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Tick(LogitsProcessor):
        def __call__(self, input_ids, scores):
            marks.tick()
            return scores

    config = model.config
    pad = getattr(config, "pad_token_id", None)
    pad = pad if pad is not None else (getattr(config, "eos_token_id", None) or 0)
    processors = LogitsProcessorList([Tick()])

    def call():
        marks.begin()
        return model.generate(**feeds, do_sample=False, num_beams=1, min_new_tokens=new_tokens,
                              max_new_tokens=new_tokens, use_cache=True, pad_token_id=pad,
                              logits_processor=processors)
    return call


def generate_metrics(marks: StepMarks, batch_size: int, new_tokens: int) -> dict:
    """TTFT and per-token decode statistics over the timed calls."""
    calls = marks.intervals_ms()
    ttft = [c[0] for c in calls if c]
    steps = [s for c in calls for s in c[1:]]
    decode = latency_stats(steps)
    mean_step_s = decode["mean"] / 1e3 if decode["n"] else None
    return {
        "ttft_ms": latency_stats(ttft),
        "decode_ms_per_token": decode,
        "decode_steps_per_call": sorted({len(c) - 1 for c in calls}),
        "decode_tokens_per_s": 1 / mean_step_s if mean_step_s else None,
        "decode_tokens_per_s_batch": batch_size / mean_step_s if mean_step_s else None,
        "new_tokens_per_call": new_tokens,
    }, {"ttft_ms": ttft, "decode_ms": steps}
