"""A CPU-sized stand-in for karpathy/autoresearch's prepare.py: the fixed part of the loop.

Protected in checklists/karpathy.yaml, as in program.md: the data, the tokenizer, the time
budget and the evaluation never change between experiments. Here the data is a small text
made here from a tiny seeded grammar (no download), the tokenizer is bytes, and `evaluate_bpb` is the
validation loss in bits per byte, the number the loop minimises.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np

#: Wall-clock seconds of training per experiment. Karpathy's is a fixed 300 (five minutes);
#: the stand-in reads TIME_BUDGET so tests and screening tiers can run it in a second.
TIME_BUDGET = float(os.environ.get("TIME_BUDGET", "300"))
#: Bytes: the tokenizer's whole vocabulary.
VOCAB_SIZE = 256


WORDS = {"subject": ["the model", "a small net", "the optimizer", "every layer", "the loss"],
         "verb": ["learns", "forgets", "predicts", "smooths", "overfits"],
         "object": ["the next byte", "its own noise", "a long context", "the baseline"]}


def corpus() -> bytes:
    """About 8 KB of sentences from a fixed seed: the same text on every machine."""
    rng = random.Random(1234)
    lines = [f"{rng.choice(WORDS['subject'])} {rng.choice(WORDS['verb'])} "
             f"{rng.choice(WORDS['object'])}." for _ in range(250)]
    return "\n".join(lines).encode()


def splits() -> tuple[np.ndarray, np.ndarray]:
    """Train and validation token ids (90/10, the same every time)."""
    data = np.frombuffer(corpus(), dtype=np.uint8).astype(np.int64)
    cut = int(len(data) * 0.9)
    return data[:cut], data[cut:]


def evaluate_bpb(next_byte_logprobs) -> float:
    """Bits per byte on the validation split; `next_byte_logprobs(prev) -> (n, 256)` gives
    natural-log probabilities of each next byte after each byte in `prev`."""
    _, val = splits()
    logp = next_byte_logprobs(val[:-1])
    nll = -logp[np.arange(len(val) - 1), val[1:]].mean()
    return float(nll / math.log(2))
