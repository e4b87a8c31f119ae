"""One engine per run and per workspace: the locks are keyed on what is shared (the store
file, the target files, the repository), not on the paths as typed."""

from __future__ import annotations

import pytest

from engine.host import Host, engine_alive
from engine.model import UserError
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import metric_spec
from tests.test_loop import make_repo, run_spec


async def test_a_symlink_to_the_store_finds_the_same_run_lock(tmp_path, params_workspace):
    spec = load_spec(metric_spec(params_workspace))
    first = Host(Store(tmp_path / "a.db"))
    first.add(spec)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link.db"
    link.symlink_to(tmp_path / "a.db")
    second = Host(Store(link))
    with pytest.raises(UserError, match="already being run by another engine"):
        second.add(spec)
    assert engine_alive(link, "toy") and engine_alive(tmp_path / "a.db", "toy")


@pytest.mark.parametrize("git", [False, True])
async def test_a_second_store_on_the_same_workspace_is_refused_naming_the_first(
        tmp_path, params_workspace, git):
    if git:
        make_repo(params_workspace)
    spec = load_spec(metric_spec(params_workspace, stop="max_rounds: 2"))
    first = Host(Store(tmp_path / "a.db"))
    first.add(spec)
    second = Host(Store(tmp_path / "b.db"))
    with pytest.raises(UserError, match=r"in use by another engine with store .*a\.db") as err:
        second.add(spec)
    assert "\n" not in str(err.value)
    assert not Store(tmp_path / "b.db").get_run("toy")["engine_pid"]  # nothing started
    await first.run_until_done()  # a run that ends lets go of its workspace
    store = await run_spec(tmp_path / "b.db", metric_spec(params_workspace, stop="max_rounds: 2"))
    assert store.get_run("toy")["status"] == "done"


async def test_runs_of_one_store_may_share_a_workspace(tmp_path, params_workspace):
    host = Host(Store(tmp_path / "a.db"))
    host.add(load_spec(metric_spec(params_workspace, name="one", stop="max_rounds: 2")))
    host.add(load_spec(metric_spec(params_workspace, name="two", stop="max_rounds: 2")))
    results = await host.run_until_done()
    assert len(results) == 2
