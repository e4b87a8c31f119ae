"""Train a small neural network on the UCI handwritten digits (8×8 images, 10 classes) with
numpy alone, and print one JSON line: held-out accuracy, train/validation gap, training time
and parameter count. The settings come from params.yaml; the seed from the command line.

Data: digits.csv.gz, the UCI ML hand-written digits test set as shipped with scikit-learn
(BSD-3-Clause); 1,797 images, 64 features, label in the last column.
"""

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).parent


def load(seed: int):
    with gzip.open(HERE / "digits.csv.gz", "rt") as handle:
        data = np.loadtxt(handle, delimiter=",")
    x, y = data[:, :-1] / 16.0, data[:, -1].astype(int)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.75 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def train(p: dict, seed: int) -> dict:
    xt, yt, xv, yv = load(seed)
    rng = np.random.default_rng(seed + 1)
    hidden, act = int(p["hidden"]), p["activation"]
    w1 = rng.normal(0, 1 / np.sqrt(64), (64, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), (hidden, 10))
    b2 = np.zeros(10)
    params = [w1, b1, w2, b2]
    velocity = [np.zeros_like(q) for q in params]
    lr, l2, batch, mom = float(p["lr"]), float(p["l2"]), int(p["batch_size"]), float(p["momentum"])
    onehot = np.eye(10)[yt]

    def forward(x):
        z = x @ w1 + b1
        h = np.maximum(z, 0) if act == "relu" else np.tanh(z)
        logits = h @ w2 + b2
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        return z, h, prob / prob.sum(axis=1, keepdims=True)

    started = time.perf_counter()
    for _ in range(int(p["epochs"])):
        order = rng.permutation(len(yt))
        for i in range(0, len(yt), batch):
            idx = order[i:i + batch]
            x = xt[idx]
            z, h, prob = forward(x)
            d_logits = (prob - onehot[idx]) / len(idx)
            d_h = d_logits @ w2.T
            d_z = d_h * (z > 0) if act == "relu" else d_h * (1 - h ** 2)
            grads = [x.T @ d_z + l2 * w1, d_z.sum(0), h.T @ d_logits + l2 * w2, d_logits.sum(0)]
            for q, v, g in zip(params, velocity, grads, strict=True):
                v *= mom
                v -= lr * g
                q += v
    seconds = time.perf_counter() - started

    def accuracy(x, y):
        return float((forward(x)[2].argmax(axis=1) == y).mean())

    train_acc, val_acc = accuracy(xt, yt), accuracy(xv, yv)
    if not np.isfinite(w1).all():
        train_acc = val_acc = 0.0
    return {"val_acc": round(val_acc, 4), "train_acc": round(train_acc, 4),
            "gap": round(train_acc - val_acc, 4), "train_s": round(seconds, 3),
            "params": sum(q.size for q in params)}


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    settings = yaml.safe_load((HERE / "params.yaml").read_text())
    with np.errstate(all="ignore"):
        print(json.dumps(train(settings, seed)))
