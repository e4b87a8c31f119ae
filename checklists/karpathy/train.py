"""A CPU-sized stand-in for karpathy/autoresearch's train.py: the one file the agent edits.

A byte-level model (an embedding per byte, then a linear read-out: a low-rank bigram) trained
with Adam for the fixed time budget of prepare.py, then evaluated. It ends with the same
summary block as Karpathy's script, so the loop reads `val_bpb` (and keeps every other line
as a secondary metric) with no regex.
"""

from __future__ import annotations

import resource
import time

import numpy as np
from prepare import TIME_BUDGET, VOCAB_SIZE, evaluate_bpb, splits

# Hyperparameters: what an experiment changes.
EMBED_DIM = 16         # width of the byte embedding
LEARNING_RATE = 0.01   # Adam step size
BATCH_SIZE = 256       # byte pairs per step
MAX_STEPS = 300        # stop here if the time budget allows more
WEIGHT_DECAY = 0.0     # L2 on both matrices
SEED = 0

t_start = time.time()
rng = np.random.default_rng(SEED)
train, _ = splits()
emb = rng.normal(0, 0.1, (VOCAB_SIZE, EMBED_DIM))
out = rng.normal(0, 0.1, (EMBED_DIM, VOCAB_SIZE))
params = [emb, out]
moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]


def logprobs(prev: np.ndarray) -> np.ndarray:
    logits = emb[prev] @ out
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


step = 0
t_train = time.time()
while step < MAX_STEPS and time.time() - t_train < TIME_BUDGET:
    idx = rng.integers(0, len(train) - 1, BATCH_SIZE)
    prev, nxt = train[idx], train[idx + 1]
    hidden = emb[prev]
    probs = np.exp(logprobs(prev))
    probs[np.arange(BATCH_SIZE), nxt] -= 1
    probs /= BATCH_SIZE
    g_out = hidden.T @ probs + WEIGHT_DECAY * out
    g_hidden = probs @ out.T
    onehot = np.zeros((BATCH_SIZE, VOCAB_SIZE))
    onehot[np.arange(BATCH_SIZE), prev] = 1
    g_emb = onehot.T @ g_hidden + WEIGHT_DECAY * emb
    step += 1
    for p, g, (m, v) in zip(params, (g_emb, g_out), moments, strict=True):
        m *= 0.9
        m += 0.1 * g
        v *= 0.999
        v += 0.001 * g * g
        p -= LEARNING_RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    if step % 50 == 0:  # a progress line redrawn in place, as Karpathy's
        print(f"\rstep {step:05d} | lr: {LEARNING_RATE:g}", end="", flush=True)
print()
training_seconds = time.time() - t_train

val_bpb = evaluate_bpb(logprobs)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # CPU: resident memory
num_params = emb.size + out.size
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_seconds:.1f}")
print(f"total_seconds:    {time.time() - t_start:.1f}")
print(f"peak_vram_mb:     {peak_mb:.1f}")
print(f"mfu_percent:      {0.0:.2f}")
print(f"total_tokens_M:   {step * BATCH_SIZE / 1e6:.1f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.1f}")
print(f"depth:            {1}")
