"""The job agent that runs ON an SSH host: started once per connection (`python3 -c`), it
takes jobs over its stdin and streams their output back over its stdout.

Why: a channel per job costs the host an sshd session, a login shell, `sh`, `head`, `tar`
and `setsid` — about ten milliseconds of CPU per job — where this process needs one
fork of `sh`. It is plain standard-library Python (3.6+) and never imported by the engine:
its source text is sent as the `-c` argument (see agent.py).

Requests, one JSON object per line; the first one of a candidate carries its files:
    {"op": "run", "id": N, "root": DIR, "archive": BASE64|null, "workdir": DIR,
     "script": SH, "pgid": FILE, "stdin": TEXT|null, "leftovers": [DIR...]}
    {"op": "read", "id": N, "root": DIR, "archive": ..., "workdir": DIR, "path": FILE}
    {"op": "kill", "id": N, "grace": SECONDS}
Requests are handled in order, so a candidate's later requests find its files unpacked.
Replies are frames `ID KIND LENGTH\\n` + LENGTH bytes: `0 hello`, then per request `fail`
(the files could not be unpacked: why), `out` (output bytes) and `exit` (the status),
or `file` (the contents) / `nofile`. When stdin ends — the engine closed it, or the
connection died — every job still running is killed: nothing outlives its connection.
"""

import base64
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

OUT = sys.stdout.buffer
LOCK = threading.Lock()
#: Seconds output may wait to share a write with what follows (often the exit status):
#: one packet instead of two for the usual "print the metric and exit".
LINGER_S = 0.005
#: Job id -> its Popen, while it runs.
JOBS = {}
#: Candidate folders whose files did not unpack: their later requests fail the same way.
FAILED = {}


def send(job, kind, payload=b"", flush=True):
    with LOCK:
        OUT.write(b"%d %s %d\n" % (job, kind, len(payload)) + payload)
        if flush:
            OUT.flush()


def kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
        return True
    except OSError:
        return False


def unpack(request):
    """Unpack a candidate's archive (gzipped tar) into the working folder, as `tar -xmo`
    would (no stored times or owners); None when done, else why not."""
    data = base64.b64decode(request["archive"])
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.utime = lambda *args: None  # like tar -m: files are new here
            tar.chown = lambda *args, **kwargs: None  # like tar -o
            if hasattr(tarfile, "fully_trusted_filter"):  # 3.12+: say so, or it warns
                tar.extractall(request["workdir"], filter="fully_trusted")
            else:
                tar.extractall(request["workdir"])
    except (OSError, tarfile.TarError) as exc:
        return str(exc)
    return None


def arrived(request):
    """Whether the candidate's files are in place (unpacking them if this request carries
    them); a `fail` frame says why not."""
    root = request["root"]
    if request.get("archive") is not None:
        problem = unpack(request)
        if problem is not None:
            FAILED[root] = problem
    if root in FAILED:
        send(request["id"], b"fail", FAILED[root].encode(errors="replace"))
        return False
    return True


def pump(job, proc, waiter):
    """Forward a job's output, then its status once the output has ended."""
    fd = proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        # Flush now unless more (or the end) is about to come: then it goes in one write.
        send(job, b"out", chunk, flush=not select.select([fd], [], [], LINGER_S)[0])
    waiter.join()
    proc.stdout.close()
    JOBS.pop(job, None)
    send(job, b"exit", str(proc.returncode).encode())


def wait(proc):
    proc.wait()
    # The job is over: whatever it left running in its group goes too (as for local jobs).
    kill_group(proc.pid, signal.SIGKILL)


def feed(proc, text):
    try:
        proc.stdin.write(text.encode())
        proc.stdin.close()
    except OSError:
        pass


def run(request):
    job = request["id"]
    for path in request.get("leftovers") or ():
        threading.Thread(target=shutil.rmtree, args=(path, True), daemon=True).start()
    if not arrived(request):
        return
    stdin = request.get("stdin")
    try:
        proc = subprocess.Popen(
            ["sh", "-c", request["script"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            start_new_session=True)  # its own group: one killpg ends all it starts
    except OSError as exc:
        send(job, b"out", f"cannot start sh: {exc}\n".encode())
        send(job, b"exit", b"127")
        return
    JOBS[job] = proc
    try:  # for the engine's clean-up of abandoned jobs (remote.CLEAN)
        with open(request["pgid"], "w") as handle:
            handle.write(f"{proc.pid}\n")
    except OSError:
        pass
    if stdin is not None:
        threading.Thread(target=feed, args=(proc, stdin), daemon=True).start()
    waiter = threading.Thread(target=wait, args=(proc,), daemon=True)
    waiter.start()
    threading.Thread(target=pump, args=(job, proc, waiter), daemon=True).start()


def read(request):
    if not arrived(request):
        return

    def reply():
        try:
            with open(request["path"], "rb") as handle:
                data = handle.read()
        except OSError:
            send(request["id"], b"nofile")
            return
        send(request["id"], b"file", data)

    threading.Thread(target=reply, daemon=True).start()


def stop(proc, grace):
    """SIGTERM (lets `srun` cancel its step), a grace period, then SIGKILL."""
    if not kill_group(proc.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    # Until the job's shell is gone (then its stragglers get SIGKILL, as when a job ends).
    # Not proc.poll(): that says "running" while the waiter thread holds the process in
    # wait(); and not the group: dead members stay in it as zombies until init reaps them.
    while time.monotonic() < deadline and proc.returncode is None:
        time.sleep(0.05)
    kill_group(proc.pid, signal.SIGKILL)


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the end of stdin says the same, in order
    send(0, b"hello", b"1")
    try:
        for line in sys.stdin.buffer:
            request = json.loads(line)
            if request["op"] == "run":
                run(request)
            elif request["op"] == "read":
                read(request)
            elif request["op"] == "kill":
                proc = JOBS.get(request["id"])
                if proc is not None:
                    threading.Thread(target=stop, args=(proc, float(request["grace"])),
                                     daemon=True).start()
    except (OSError, ValueError):
        pass
    for proc in list(JOBS.values()):
        kill_group(proc.pid, signal.SIGKILL)
    # Now, not at interpreter shutdown, where a thread still sending would be fatal.
    os._exit(0)


if __name__ == "__main__":
    main()
