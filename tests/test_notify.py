"""`notify:` hooks: a command and a webhook on a local HTTP server, rate limits, failures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from engine.host import Host
from engine.spec import SpecError, load_spec
from engine.store import Store
from tests.conftest import metric_spec


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/json"
        self.server.received.append({**json.loads(body), "path": self.path})  # type: ignore[attr-defined]
        self.send_response(500 if "fail" in self.path else 200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), Hook)
    httpd.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


async def test_hooks_get_best_and_finished_rate_limited_and_failures_never_stop_a_run(
        tmp_path: Path, params_workspace: Path, server):
    url = f"http://127.0.0.1:{server.server_port}"
    out = tmp_path / "events.jsonl"
    spec = metric_spec(params_workspace, stop="max_rounds: 25", extra=f"""
notify:
  - {{url: "{url}/hook", min_interval_s: 0}}
  - {{command: "cat >> {out}; echo >> {out}", events: [finished, best], min_interval_s: 3600}}
  - {{url: "{url}/fail"}}
  - {{url: "http://127.0.0.1:9/closed", timeout_s: 2}}
  - {{command: "echo broken >&2; exit 3"}}
""")
    store = Store(tmp_path / "a.db")
    host = Host(store)
    host.add(load_spec(spec))
    await host.run_until_done()
    run = store.get_run("toy")
    assert run["status"] == "done" and run["stop_reason"] == "max rounds (25) reached"
    kept = [e for e in store.experiments(run["id"]) if e["verdict"] == "kept"]
    assert len(kept) >= 2
    posted = [e for e in server.received if e["event"] == "best" and e["path"] == "/hook"]
    assert [e["experiment"] for e in posted] == [e["id"] for e in kept]  # every new best
    assert all(e["run"] == "toy" and e["baseline"] == 9 for e in posted)
    assert posted[-1]["score"] == run["best_score"]
    finished = [e for e in server.received if e["event"] == "finished"]
    assert sorted(e["path"] for e in finished) == ["/fail", "/hook"]
    assert finished[0]["reason"] == "max rounds (25) reached"
    # The command hook: the first best only (rate-limited), then the end, which says how
    # many bests were held back.
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [e["event"] for e in lines] == ["best", "finished"]
    assert lines[0]["experiment"] == kept[0]["id"]
    warnings = [e["line"] for e in store.events(run["id"]) if e["source"] == "notify"]
    assert any("HTTP 500" in w for w in warnings)
    assert any("cannot reach it" in w for w in warnings)
    assert any("exited 3: broken" in w for w in warnings)
    assert not any("/closed" in w or "/fail" in w for w in warnings)  # a URL's path stays out


def test_bad_hooks_are_one_line(tmp_path: Path, params_workspace: Path):
    for hook, problem in [("{events: [best]}", "give one of"),
                          ("{url: ftp://x, command: y}", "give one of"),
                          ("{url: 'ftp://x'}", "not an http"),
                          ("{url: 'http://x', events: [sometimes]}", "notify\\[0\\].events")]:
        spec = metric_spec(params_workspace, extra=f"notify:\n  - {hook}\n")
        with pytest.raises(SpecError, match=rf"toy.yaml:\d+: .*{problem}"):
            load_spec(spec)
