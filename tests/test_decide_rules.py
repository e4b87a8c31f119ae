"""The keep/revert rules on their own: what each keeps, what it refuses, and why it says so.

Property tests draw noisy objectives with hypothesis and run many simulated comparisons through
the real policies, in the order the loop uses them (keep_going between repeats, then decide).
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import spec as specs
from engine.decide import build_policy
from engine.model import KEPT, REEVALUATED, RETEST, REVERTED, Evaluation, ItemResult, Mutation
from engine.noise import NoiseFloor, RetestQueue, reeval_due, restore_evaluations
from engine.spec import SpecError, parse_spec


def evals(*values: float) -> list[Evaluation]:
    return [Evaluation("ok", score=v) for v in values]


def policy(**fields):
    return build_policy(specs.Decide(**fields))


def checklist_eval(probs: list[float], rng: random.Random, flip: float = 0.0) -> Evaluation:
    """One evaluation of a checklist whose answer k passes with probability probs[k]."""
    items = [ItemResult(f"item{k % 4}", (rng.random() < p) != (rng.random() < flip),
                        f"input{k // 4}", 0) for k, p in enumerate(probs)]
    return Evaluation("ok", score=sum(r.passed for r in items) / len(items), items=items)


def run_candidate(pol, make, best, direction="maximize"):
    """Evaluate a candidate as the loop does: repeats while the policy wants more, then decide."""
    got = [make()]
    while pol.keep_going(got, best, direction):
        got.append(make())
    return pol.decide(got, best, direction), got


# ---------------------------------------------------------------- greater, the original rule


def test_greater_keeps_strictly_better_and_reverts_ties():
    pol = policy()
    assert pol.decide(evals(0.6), evals(0.5), "maximize").verdict == KEPT
    tie = pol.decide(evals(0.5), evals(0.5), "maximize")
    assert tie.verdict == REVERTED and tie.reason.startswith("tie")
    lower = pol.decide(evals(0.4), evals(0.5), "minimize")
    assert lower.verdict == KEPT and lower.details["gain"] == pytest.approx(0.1)


def test_greater_keeps_about_half_of_candidates_that_change_nothing():
    rng = random.Random(1)
    pol = policy()
    kept = sum(pol.decide(evals(rng.gauss(0, 1)), evals(rng.gauss(0, 1)), "maximize").verdict
               == KEPT for _ in range(2000))
    assert 0.45 < kept / 2000 < 0.55  # the problem this module exists for


def test_repeats_aggregate_by_median_when_asked():
    pol = policy(repeats=3, aggregate="median", early_stop=False)
    decision = pol.decide(evals(0.0, 0.9, 0.0), evals(0.2, 0.1, 0.1), "maximize")
    assert decision.verdict == REVERTED  # the mean (0.3) would have kept it; the median (0) does not
    assert decision.details["repeats"] == 3


# ---------------------------------------------------------------- margin


def test_margin_keeps_only_beyond_z_standard_errors_and_says_so():
    pol = policy(rule="margin", repeats=3, early_stop=False)
    pol.measure_noise(evals(1.0, 1.1, 0.9))  # sd 0.1, 2 df
    best = evals(1.0, 1.1, 0.9)
    win = pol.decide(evals(2.0, 2.1, 1.9), best, "maximize")
    assert win.verdict == KEPT
    assert win.reason.startswith("gain +1 > ") and "×se" in win.reason and "(3 repeats" in win.reason
    assert {"gain", "se", "p", "repeats", "df", "threshold"} <= win.details.keys()
    assert win.details["df"] == 4 and win.details["p"] < 0.001
    small = pol.decide(evals(1.05, 1.15, 0.95), best, "maximize")
    assert small.verdict == REVERTED and "≤" in small.reason


def test_margin_min_delta_binds_when_the_noise_is_tiny():
    pol = policy(rule="margin", min_delta=0.5, retest=0)
    pol.measure_noise(evals(1.0, 1.0, 1.0))
    decision = pol.decide(evals(1.3), evals(1.0, 1.0, 1.0), "maximize")
    assert decision.verdict == REVERTED and "min_delta 0.5" in decision.reason
    assert pol.decide(evals(1.6), evals(1.0, 1.0, 1.0), "maximize").verdict == KEPT


def test_margin_without_any_noise_estimate_says_so_and_needs_a_strict_gain():
    pol = policy(rule="margin", noise_repeats=1)
    pol.measure_noise(evals(1.0))
    assert "not measured" in pol.noise.describe()
    decision = pol.decide(evals(1.01), evals(1.0), "maximize")
    assert decision.verdict == KEPT and "no noise estimate" in decision.reason


# These tests bound rates measured over random trials: a 3-sigma bound checked on freshly
# drawn examples fails now and then by chance (one seed gave 5.0% against 4.55%, with a true
# rate of 2.3%); tests/conftest.py has hypothesis draw the same examples every run.
@settings(max_examples=12, deadline=None)
@given(sd=st.floats(0.001, 10), repeats=st.integers(1, 3), seed=st.integers(0, 10_000),
       direction=st.sampled_from(["maximize", "minimize"]))
def test_margin_keeps_a_big_true_effect(sd, repeats, seed, direction):
    rng = random.Random(seed)
    pol = policy(rule="margin", repeats=repeats)
    sign = 1 if direction == "maximize" else -1
    kept = 0
    for _ in range(100):
        best = evals(*(rng.gauss(5, sd) for _ in range(pol.baseline_repeats)))
        pol.measure_noise(best)
        decision, _ = run_candidate(pol, lambda: Evaluation("ok", score=rng.gauss(5 + sign * 12 * sd, sd)),
                                    best, direction)
        kept += decision.verdict == KEPT
    assert kept >= 95


@settings(max_examples=12, deadline=None)
@given(sd=st.floats(0.001, 10), repeats=st.integers(1, 3), seed=st.integers(0, 10_000),
       confirm=st.booleans())
def test_margin_rarely_keeps_a_candidate_that_changes_nothing(sd, repeats, seed, confirm):
    rng = random.Random(seed)
    pol = policy(rule="margin", repeats=repeats, confirm=confirm)
    trials, kept = 400, 0
    for _ in range(trials):
        best = evals(*(rng.gauss(0, sd) for _ in range(pol.baseline_repeats)))
        pol.measure_noise(best)
        decision, _ = run_candidate(pol, lambda: Evaluation("ok", score=rng.gauss(0, sd)), best)
        kept += decision.verdict == KEPT
    # z = 2 is a 2.3% one-sided test; the Student-t widening keeps it there with few df.
    assert kept / trials <= 0.023 + 3 * math.sqrt(0.023 * 0.977 / trials)


# ---------------------------------------------------------------- paired


@settings(max_examples=15, deadline=None)
@given(keys=st.integers(8, 60), repeats=st.integers(1, 3), flip=st.floats(0, 0.3),
       alpha=st.sampled_from([0.05, 0.1]), confirm=st.booleans(), seed=st.integers(0, 10_000),
       shape=st.sampled_from(["uniform", "extreme", "half"]))
def test_paired_keeps_an_identical_candidate_at_most_alpha_of_the_time(
        keys, repeats, flip, alpha, confirm, seed, shape):
    rng = random.Random(seed)
    probs = [{"uniform": rng.random(), "extreme": rng.choice([0.03, 0.97]),
              "half": 0.5}[shape] for _ in range(keys)]
    pol = policy(rule="paired", repeats=repeats, alpha=alpha, confirm=confirm)
    trials, kept = 250, 0
    for _ in range(trials):
        best = [checklist_eval(probs, rng, flip) for _ in range(pol.baseline_repeats)]
        pol.measure_noise(best)
        decision, _ = run_candidate(pol, lambda: checklist_eval(probs, rng, flip), best)
        kept += decision.verdict == KEPT
    assert kept / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_paired_keeps_a_checklist_that_fixes_two_items_everywhere():
    rng = random.Random(7)
    before = [0.3] * 96
    after = [0.95 if k % 4 < 2 else 0.3 for k in range(96)]
    pol = policy(rule="paired")
    kept = 0
    for _ in range(50):
        best = [checklist_eval(before, rng)]
        decision = pol.decide([checklist_eval(after, rng)], best, "maximize")
        kept += decision.verdict == KEPT
    assert kept >= 40
    assert "sign test" in decision.reason and "answers" in decision.reason
    assert decision.details["pairs"] == 96
    assert decision.details["wins"] + decision.details["losses"] <= 96


def test_paired_compares_answer_by_answer_sign_test_then_wilcoxon_or_cmh_over_repeats():
    def answers(pattern: str) -> Evaluation:
        items = [ItemResult("item", c == "1", f"in{k}", 0) for k, c in enumerate(pattern)]
        return Evaluation("ok", score=pattern.count("1") / len(pattern), items=items)

    pol = policy(rule="paired", repeats=1, retest=0)
    best = [answers("0000000000")]
    one = pol.decide([answers("1111111100")], best, "maximize")
    assert one.verdict == KEPT  # 8 wins, 0 losses: p = 1/256
    assert one.details["test"] == "sign test" and one.details["p"] == pytest.approx(1 / 256)
    assert one.details["wins"] == 8 and one.details["losses"] == 0
    pol2 = policy(rule="paired", repeats=2, early_stop=False, retest=0)
    twice = [answers("1111111100"), answers("1111110000")]
    graded = pol2.decide(twice, best * 2, "maximize")
    assert graded.details["test"] == "Wilcoxon" and graded.verdict == KEPT
    # Repeats that differ (2 against the best's 1) break Wilcoxon's symmetry: stratified CMH.
    mixed = pol2.decide(twice, best, "maximize")
    assert mixed.details["test"] == "CMH" and mixed.verdict == KEPT
    unanswered = Evaluation("ok", score=0.0, items=[ItemResult("item", None, f"in{k}", 0)
                                                    for k in range(10)])
    assert pol.decide([unanswered], best, "maximize").verdict == REVERTED  # no answer is a no


def test_paired_on_a_metric_falls_back_to_a_t_test_on_the_repeats():
    pol = policy(rule="paired", repeats=3, early_stop=False)
    pol.measure_noise(evals(1.0, 1.1, 0.9))
    decision = pol.decide(evals(2.0, 2.1, 1.9), evals(1.0, 1.1, 0.9), "maximize")
    assert decision.verdict == KEPT and "no answers to pair" in decision.reason


# ---------------------------------------------------------------- early stop, confirm


def test_repeats_stop_early_when_a_candidate_is_clearly_worse():
    pol = policy(rule="margin", repeats=3)
    best = evals(1.0, 1.1, 0.9)
    pol.measure_noise(best)
    assert not pol.keep_going(evals(-3.0), best, "maximize")
    assert pol.keep_going(evals(1.1), best, "maximize")
    decision = pol.decide(evals(-3.0), best, "maximize")
    assert decision.verdict == REVERTED and decision.details["early_stop"] is True
    assert decision.reason.startswith("stopped after 1 of 3 repeats: clearly worse")
    assert decision.details["repeats"] == 1


def test_repeats_stop_early_when_the_bar_is_out_of_reach():
    pol = policy(rule="margin", repeats=3)
    best = evals(*[1.0, 1.1, 0.9] * 3)
    pol.measure_noise(best)
    # Not significantly worse, but even its optimistic end cannot clear the bar for 3 repeats.
    assert not pol.keep_going(evals(0.9), best, "maximize")
    assert "clearly short" in pol.decide(evals(0.9), best, "maximize").reason
    no_early = policy(rule="margin", repeats=3, early_stop=False)
    no_early.measure_noise(best)
    assert no_early.keep_going(evals(-3.0), best, "maximize")


def test_confirm_re_evaluates_a_would_be_winner_and_keeps_only_if_it_holds():
    pol = policy(rule="margin", repeats=2, confirm=True)
    best = evals(1.0, 1.1, 0.9)
    pol.measure_noise(best)
    assert pol.max_repeats == 4
    assert pol.keep_going(evals(3.0, 3.1), best, "maximize")  # would win: confirm it
    assert not pol.keep_going(evals(1.0, 1.05), best, "maximize")  # would not: done
    held = pol.decide(evals(3.0, 3.1, 3.05, 2.95), best, "maximize")
    assert held.verdict == KEPT and held.reason.startswith("confirmed: ")
    assert held.details["confirmed"] is True and held.details["incumbent_scores"] == [3.05, 2.95]
    assert [e.score for e in pol.incumbent(evals(3.0, 3.1, 3.05, 2.95))] == [3.05, 2.95]
    lucky = pol.decide(evals(3.0, 3.1, 0.9, 1.0), best, "maximize")
    assert lucky.verdict != KEPT and lucky.reason.startswith("not confirmed: ")


# ---------------------------------------------------------------- retest, re-evaluation


def test_a_marginal_candidate_is_retested_once_then_reverted():
    pol = policy(rule="margin")
    best = evals(*[1.0, 1.1, 0.9] * 10)
    pol.measure_noise(best)
    decision = pol.decide(evals(1.15), best, "maximize")
    assert decision.verdict == RETEST and decision.reason.startswith("marginal: ")
    queue = RetestQueue(limit=1)
    mutation = Mutation("x 1 → 2", {"p.yaml": "x: 2\n"})
    queued = queue.offer(decision, exp_id=5, mutation=mutation, parent=1)
    assert queued.verdict == RETEST and queued.reason.endswith("; will retest") and len(queue) == 1
    again = queue.offer(decision, exp_id=9, mutation=mutation, parent=1, attempt=1)
    assert again.verdict == REVERTED and again.reason.startswith("still marginal after 1 retest")
    beaten = queue.offer(decision, exp_id=10, mutation=mutation, parent=1, winner=11)
    assert beaten.verdict == REVERTED and "#11 did better" in beaten.reason
    entry, stale = queue.next(best_id=1)
    assert entry is not None and entry.exp_id == 5 and not stale
    queue.offer(decision, exp_id=12, mutation=mutation, parent=1)
    entry, stale = queue.next(best_id=3)  # the best moved on: the retest is dropped
    assert entry is None and [s.exp_id for s in stale] == [12]


def test_retest_queue_is_bounded_and_retest_can_be_switched_off():
    pol = policy(rule="margin", retest=0)
    best = evals(*[1.0, 1.1, 0.9] * 10)
    pol.measure_noise(best)
    assert pol.decide(evals(1.15), best, "maximize").verdict == REVERTED
    queue = RetestQueue(limit=1, size=2)
    marginal = policy(rule="margin")
    marginal.measure_noise(best)
    decision = marginal.decide(evals(1.15), best, "maximize")
    verdicts = [queue.offer(decision, i, Mutation("m", {}), 1).verdict for i in range(3)]
    assert verdicts == [RETEST, RETEST, REVERTED] and len(queue) == 2


def test_re_evaluation_replaces_a_lucky_score_and_flags_it():
    pol = policy(rule="margin")
    floor = evals(1.0, 1.1, 0.9)
    pol.measure_noise(floor)
    lucky = evals(3.0, 3.0, 3.1)
    decision = pol.reevaluate(lucky, evals(1.0, 1.05, 0.95), "maximize")
    assert decision.verdict == REEVALUATED
    assert decision.reason.startswith("re-evaluated: 3.03 (3 repeats) → 1 (3 repeats)")
    assert "looks lucky" in decision.reason
    assert [e.score for e in pol.reevaluated(lucky, evals(1.0))] == [1.0]
    confirmed = policy(rule="margin", confirm=True)
    assert len(confirmed.reevaluated(evals(1, 2, 3), evals(4, 5, 6))) == 6  # fresh ones add up
    assert reeval_due(5, 5) and not reeval_due(5, 4) and not reeval_due(0, 100)


# ---------------------------------------------------------------- noise floor and restore


def test_noise_floor_is_measured_refined_and_survives_json():
    floor = NoiseFloor.measure(evals(1.0, 1.2, 0.8))
    assert floor.repeats == 3 and floor.sd == pytest.approx(0.2) and floor.df == 2
    assert "sd 0.2 over 3 baseline evaluations" in floor.describe()
    assert floor.learn([2.0, 2.2]) and not floor.learn([5.0])
    again = NoiseFloor.from_json(floor.to_json())
    assert (again.df, again.ss, again.scores) == (3, pytest.approx(floor.ss), [1.0, 1.2, 0.8])
    assert NoiseFloor.from_json(None) is None


def test_best_evaluations_are_rebuilt_from_stored_decision_details():
    items = [ItemResult("a", True)]
    rebuilt = restore_evaluations(0.5, '{"scores": [0.4, 0.6]}', items)
    assert [e.score for e in rebuilt] == [0.4, 0.6] and rebuilt[0].items == items
    confirmed = restore_evaluations(0.5, '{"scores": [1, 2, 3, 4], "incumbent_scores": [3, 4]}', [])
    assert [e.score for e in confirmed] == [3.0, 4.0]
    assert [e.score for e in restore_evaluations(0.7, None, [])] == [0.7]


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize(("decide", "problem"), [
    ("{rule: bayes}", "decide.rule: Input should be 'greater', 'margin' or 'paired'"),
    ("{rule: margin, retest: -1}", "decide.retest: Input should be greater than or equal to 0"),
    ("{noise_repeats: 0}", "decide.noise_repeats: Input should be greater than or equal to 1"),
    ("{rule: paired, alpha: 1.5}", "decide.alpha: Input should be less than 1"),
    ("{early_stopping: true}", "decide.early_stopping: unknown key"),
])
def test_bad_decide_settings_are_one_line_errors(decide, problem):
    text = ("name: t\ntarget: {files: [a]}\nmutator: {kind: params, file: a, params: "
            "{x: {type: int, min: 0, max: 3}}}\nevaluate: {kind: metric, command: c, metric: m}\n"
            f"decide: {decide}\n")
    with pytest.raises(SpecError) as err:
        parse_spec(text, "s.yaml")
    assert str(err.value).startswith("s.yaml:5: ") and problem in str(err.value)
    assert "\n" not in str(err.value)
