"""Keep/revert policies: when is a candidate truly better than the best version?

Scores are noisy (an LLM judge flips, a benchmark jitters, a seed moves val_bpb), and the naive
rule keeps noise. Three rules, chosen by `decide.rule` in the spec:

- `greater`: the original autoresearch rule: a strictly better aggregate score keeps, ties revert.
- `margin`: keep only when the gain exceeds max(min_delta, z × the standard error of the
  difference); the noise comes from the baseline evaluated several times when the run starts
  (the noise floor), pooled with every repeated evaluation since. `z` is the strictness for a
  known noise; while the sd is estimated from few evaluations the multiplier widens to the
  Student-t value with the same tail (the reason shows the multiplier used).
- `paired`: compare candidate and best answer by answer (item × input × sample): an exact sign
  test (McNemar on the discordant pairs) for single yes/no answers, Wilcoxon's signed-rank test
  for graded ones (pass rates over equal repeats), a Cochran–Mantel–Haenszel test when the
  repeats differ; keep only when p < alpha.

Around every rule: `repeats` evaluations aggregated by mean or median; an early stop of the
repeats once a candidate is clearly worse, or clearly short of the bar it must clear
(`keep_going`, a sequential test consulted between repeats);
confirmation of a would-be winner with as many repeats again (`confirm`); a `retest` verdict
for marginal candidates (queued by engine/noise.py); and re-evaluation of the incumbent
(`reevaluate`). Every Decision carries a reason for the changelog and details (gain, se, p,
repeats, scores) for the store. The math is in engine/stats.py.
"""

from __future__ import annotations

from engine import spec as specs

# The rules live in engine/greater.py and engine/noisyrules.py; their names are kept here.
from engine.greater import (  # noqa: F401
    AUTO_NOISE_REPEATS,
    INCUMBENT_MAX,
    Evidence,
    GreaterPolicy,
    aggregate,
    improvement,
)
from engine.noisyrules import (  # noqa: F401
    MARGIN_RETEST_FRACTION,
    PAIRED_RETEST_FACTOR,
    MarginPolicy,
    PairedPolicy,
)

POLICIES: dict[str, type[GreaterPolicy]] = {
    "greater": GreaterPolicy, "margin": MarginPolicy, "paired": PairedPolicy}


def build_policy(config: specs.Decide) -> GreaterPolicy:
    return POLICIES[config.rule](config)
