"""Rounds a stop interrupted are not rounds without a keep: plateau and max_failures skip them."""

from __future__ import annotations

import asyncio

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import metric_spec, write


async def _stop_mid_evaluation(db, spec_path) -> None:
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec_path))
    task = asyncio.create_task(host.run_until_done())
    for _ in range(400):  # until a candidate is being evaluated
        await asyncio.sleep(0.02)
        if loop.in_flight and loop.best_id is not None:
            break
    host.stop_all()
    await asyncio.wait_for(task, 30)
    store.close()


async def test_interrupted_rounds_do_not_count_toward_plateau(tmp_path, params_workspace):
    write(params_workspace / "score.sh", "sleep 0.3\necho METRIC loss=1\n")  # never better
    spec = metric_spec(params_workspace, stop="plateau: 3, max_rounds: 50",
                       command="sh score.sh")
    db = tmp_path / "a.db"
    for _ in range(3):
        await _stop_mid_evaluation(db, spec)
    store = Store(db)
    run_id = store.get_run("toy")["id"]
    interrupted = [r for r in store.experiments(run_id) if r["verdict"] == "interrupted"]
    assert len(interrupted) == 3
    host = Host(store)
    host.add(load_spec(spec))
    results = await asyncio.wait_for(host.run_until_done(), 60)
    assert "plateau" in results[run_id]
    after = [r for r in store.experiments(run_id) if r["id"] > interrupted[-1]["id"]]
    assert len([r for r in after if r["verdict"] == "reverted"]) == 3  # three real rounds
