"""Benchmark: what prompt caching saves on a checklist run, against the Messages API stand-in
(tests/fake_anthropic.py) reporting usage as the real API does — tokens from the request, a
cache hit only on a prefix written before that reaches the model family's minimum cacheable
length (1,024 tokens for Sonnet 4.6, 4,096 for Haiku 4.5), 5-minute or 1-hour TTLs.

It runs checklists/landing-page.yaml (Sonnet mutator and judge, Haiku producer) twice through
the real engine: once as shipped, once with a server that honours no cache_control (the same
prompts, uncached). The stand-in behaves like a plausible model: the mutator appends a rule to
the skill each round, the producer writes a ~150-word page that follows it, the judge answers
with a little noise. Printed: the share of input tokens read from the cache after round 1
(target >= 80%), the input cost per round with and without caching and the ratio (target
>= 60% lower), per role.

    python bench/llm_cost.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_anthropic import (  # noqa: E402
    TEST_KEY,
    FakeAnthropic,
    answers,
    change,
    judged_items,
    text_reply,
)

#: USD per million tokens by family: input, cache write (5 min, 1 h), cache read.
PRICES = {"sonnet": (3.0, 3.75, 6.0, 0.3), "haiku": (1.0, 1.25, 2.0, 0.1)}
ROLE = {"propose_change": "mutator", "record_answers": "judge", None: "producer"}


def respond(seed: int):
    rng = random.Random(seed)
    state = {"rule": 0}

    def responder(body: dict[str, Any]) -> Any:
        tool = (body.get("tool_choice") or {}).get("name")
        if tool == "propose_change":
            state["rule"] += 1
            n = state["rule"]
            files = body["system"][1]["text"]
            skill = re.search(r'<file path="skill.md">\n(.*)</file>', files, re.DOTALL)[1]
            last = skill.rstrip("\n").splitlines()[-1]
            return change(f"Add rule {n}", [{"file": "skill.md", "search": last, "replace":
                          f"{last}\n- Rule {n}: lead the paragraph {n} with a concrete figure "
                          "the reader cares about, and keep it under 25 words."}],
                          rationale=f"item headline-number fails on {n} outputs", tokens_out=180)
        if tool == "record_answers":
            return answers([(i, "yes" if rng.random() < 0.7 else "no", "quoted evidence")
                            for i in judged_items(body)], tokens_out=120)
        words = " ".join(rng.choice(["ship", "faster", "teams", "save", "hours", "every",
                                     "week", "with", "clear", "reports"]) for _ in range(140))
        return text_reply(f"# Save 4 hours a week\n\n{words}.\n\nStart your free trial.",
                          tokens_out=220)

    return responder


async def one_run(rounds: int, caching: bool, seed: int) -> dict[str, Any]:
    from engine.host import Host
    from engine.spec import load_spec
    from engine.store import Store

    work = Path(tempfile.mkdtemp(prefix="llm-cost-"))
    shutil.copytree(ROOT / "checklists" / "landing-page", work / "landing-page")
    text = (ROOT / "checklists" / "landing-page.yaml").read_text()
    text = re.sub(r"max_rounds: \d+", f"max_rounds: {rounds}", text)
    text = text.replace("target: 0.95", "target: null").replace("plateau: 10", "plateau: null")
    (work / "landing-page.yaml").write_text(text)
    with FakeAnthropic(respond(seed), cache=True) as server:
        server.honour_cache = caching
        os.environ.update(ANTHROPIC_API_KEY=TEST_KEY, ANTHROPIC_BASE_URL=server.url)
        store = Store(work / "ar.db")
        host = Host(store)
        loop = host.add(load_spec(work / "landing-page.yaml"))
        marks: dict[int, int] = {}  # experiments finished -> requests billed by then
        host.listeners.append(lambda: marks.setdefault(
            sum(1 for e in store.experiments(loop.run_id) if e["verdict"] != "running"),
            len(server.billed)))
        await host.run_until_done()
        kinds = [e["kind"] for e in store.experiments(loop.run_id)]
        bills = list(server.billed)
        # Round 1 ends when the first candidate (and what came before it) is recorded.
        first_candidate = kinds.index("candidate") + 1
        start = min((n for k, n in marks.items() if k >= first_candidate), default=0)
    shutil.rmtree(work, ignore_errors=True)
    later = bills[start:]
    return {"later": later, "roles": [ROLE.get(b["tool"], "producer") for b in later],
            "rounds": max(1, rounds - 1)}


def input_cost(bill: dict[str, Any]) -> float:
    family = "haiku" if "haiku" in (bill.get("model") or "") else "sonnet"
    price_in, write_5m, write_1h, read = PRICES[family]
    long = (bill.get("cache_creation") or {}).get("ephemeral_1h_input_tokens", 0)
    short = bill["cache_creation_input_tokens"] - long
    return (bill["input_tokens"] * price_in + short * write_5m + long * write_1h
            + bill["cache_read_input_tokens"] * read) / 1e6


def summary(run: dict[str, Any]) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """(cache-read share, input USD per round, per role (share, USD per round))."""
    def share(bills: list[dict[str, Any]]) -> float:
        total = sum(b["input_tokens"] + b["cache_creation_input_tokens"]
                    + b["cache_read_input_tokens"] for b in bills)
        return sum(b["cache_read_input_tokens"] for b in bills) / total if total else 0.0

    later, rounds = run["later"], run["rounds"]
    per_role = {}
    for role in ("mutator", "producer", "judge"):
        mine = [b for b, r in zip(later, run["roles"], strict=False) if r == role]
        per_role[role] = (share(mine), sum(map(input_cost, mine)) / rounds)
    return share(later), sum(map(input_cost, later)) / rounds, per_role


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cached = asyncio.run(one_run(args.rounds, True, args.seed))
    plain = asyncio.run(one_run(args.rounds, False, args.seed))
    share, cost, roles = summary(cached)
    _, plain_cost, plain_roles = summary(plain)
    print(f"landing-page, {args.rounds} rounds, after round 1:")
    print(f"  input tokens read from the cache: {share:.0%} (target >= 80%)")
    print(f"  input cost per round: ${cost:.4f} with caching vs ${plain_cost:.4f} without "
          f"= {1 - cost / plain_cost:.0%} lower (target >= 60%)")
    for role, (role_share, role_cost) in roles.items():
        base = plain_roles[role][1]
        print(f"    {role:<9} cache share {role_share:4.0%}   ${role_cost:.4f}/round vs "
              f"${base:.4f} ({1 - role_cost / base if base else 0:.0%} lower)")


if __name__ == "__main__":
    main()
