"""What runs on the far side of an SSH worker: the shell text of a job, the candidate's
archive, and the scripts that kill and clean up remote jobs.

Jobs normally go to the host's job agent (remote_agent.py, which needs python3); the shell
path here is what hosts without it get: plain POSIX sh plus `setsid`, `tar` and `head`
(util-linux, coreutils or busybox), so any Linux host works without installing anything.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shlex
import signal
import stat
import tarfile
from pathlib import Path

#: Payloads above this are gzipped for the wire; smaller ones are not worth a gzip process.
COMPRESS_ABOVE = 1_000_000

# Kill a job's process group: wait briefly for the group id (a job killed the moment it
# starts may not have written it yet), SIGTERM, a grace period, then SIGKILL. Exit 3 means
# the job never started here (it may still, so the caller cleans up later).
KILL = """f={pgid}; i=0
while [ ! -s "$f" ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
pg=$(cat "$f" 2>/dev/null) || exit 3
kill -s TERM -- -"$pg" 2>/dev/null || exit 0
i=0; while kill -s 0 -- -"$pg" 2>/dev/null && [ $i -lt {grace} ]; do sleep 0.1; i=$((i+1)); done
kill -s KILL -- -"$pg" 2>/dev/null; exit 0"""

# Kill what is left of abandoned jobs (their connection died) and remove their folders.
CLEAN = """for d in {folders}; do
  for f in "$d"/ctl/*.pgid; do [ -s "$f" ] && kill -s KILL -- -"$(cat "$f")" 2>/dev/null; done
  rm -rf "$d"
done; exit 0"""


def parse_target(host: str) -> tuple[str | None, str, int | None]:
    """`user@host:port` → (user, host, port); a bare alias → (None, alias, None)."""
    user, _, rest = host.rpartition("@")
    port: int | None = None
    if rest.startswith("[") and "]" in rest:  # [::1]:2222
        name, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
        rest = name
    elif rest.count(":") == 1 and rest.rsplit(":", 1)[1].isdigit():
        rest, port_text = rest.rsplit(":", 1)
        port = int(port_text)
    return user or None, rest, port


def pack(folder: Path, name: str) -> tuple[bytes, bool]:
    """The staged copy as a tar of `NAME/ws/...` plus an empty `NAME/ctl/`, gzipped when
    large; owners cleared (the remote user owns what it unpacks). Returns (data, gzipped)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = os.lstat(folder)
        for arcname in (name, f"{name}/ctl"):
            tar.addfile(_entry(arcname, top, tarfile.DIRTYPE))
        _add_tree(tar, str(folder), f"{name}/ws", {})
    data = buffer.getvalue()
    if len(data) <= COMPRESS_ABOVE:
        return data, False
    return gzip.compress(data, compresslevel=1), True


def _entry(arcname: str, st: os.stat_result, kind: bytes, size: int = 0,
           linkname: str = "") -> tarfile.TarInfo:
    """A member owned by nobody in particular. Built here rather than by TarFile.add, which
    looks the owner up in the user and group databases for every file (most of its time)."""
    info = tarfile.TarInfo(arcname)
    info.type, info.size, info.linkname = kind, size, linkname
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


def _add_tree(tar: tarfile.TarFile, path: str, arcname: str,
              inodes: dict[tuple[int, int], str]) -> None:
    """Add `path` (recursively, in name order, as tar does): folders, files, symlinks,
    and hard links as links; anything else (sockets, devices) is left out."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        tar.addfile(_entry(arcname, st, tarfile.DIRTYPE))
        for child in sorted(os.listdir(path)):
            _add_tree(tar, os.path.join(path, child), f"{arcname}/{child}", inodes)
    elif stat.S_ISLNK(st.st_mode):
        tar.addfile(_entry(arcname, st, tarfile.SYMTYPE, linkname=os.readlink(path)))
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in inodes:
            tar.addfile(_entry(arcname, st, tarfile.LNKTYPE, linkname=inodes[key]))
            return
        inodes[key] = arcname
        with open(path, "rb") as handle:
            tar.addfile(_entry(arcname, st, tarfile.REGTYPE, size=st.st_size), handle)


def unpack_command(workdir: str, gzipped: bool) -> str:
    """Unpack an archive from `pack`, read from stdin, into the working folder."""
    return f"tar -x{'z' if gzipped else ''}mof - -C {shlex.quote(workdir)}"


def upload_prelude(workdir: str, size: int, gzipped: bool, marker: str,
                   leftovers: list[str]) -> str:
    """Shell text that unpacks the first SIZE bytes of stdin (the archive) before a job, and
    says so with a marker line; the rest of stdin is the job's. Folders of earlier jobs are
    removed on the way, in the background."""
    rm = (f"rm -rf -- {' '.join(shlex.quote(p) for p in leftovers)} "
          "</dev/null >/dev/null 2>&1 & " if leftovers else "")
    unpack = unpack_command(workdir, gzipped)
    return (f"{rm}head -c {size} | {unpack} 2>&1 || {{ echo {marker}failed; exit 199; }}; "
            f"echo {marker}ready; ")


#: What expands in a worker `env` value: a `~` at the start or after a `:` (before `/`, `:`
#: or the end), and `$VAR` / `${VAR}`.
_EXPANDS = re.compile(r"((?:^|(?<=:))~(?=/|:|$)|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})")


def shell_value(value: str) -> str:
    """A worker `env` value as the remote shell should see it in an assignment, the way a
    shell user expects: `~` becomes $HOME, `$VAR` and `${VAR}` expand; the rest is literal
    (no command substitution, globbing or word splitting)."""
    parts = []
    for n, piece in enumerate(_EXPANDS.split(value)):
        if n % 2:
            parts.append('"$HOME"' if piece == "~" else f'"{piece}"')
        elif piece:
            parts.append(shlex.quote(piece))
    return "".join(parts) or "''"


def job_command(command: str, folder: str, env: dict[str, str], launcher: str = "") -> str:
    """What a job's own shell runs (`folder` comes shell-quoted): into the folder, the
    environment, then the command (behind the launcher, if any)."""
    exports = "".join(f"export {k}={shell_value(v)}; " for k, v in env.items())
    # Without a launcher the command runs in the job's shell itself (one process fewer).
    run = (f"exec {launcher.strip()} sh -c {shlex.quote(command)}" if launcher.strip()
           else f"eval {shlex.quote(command)}")
    return f"cd {folder} || exit 126; {exports}{run}"


def job_script(command: str, folder: str, pgid_file: str, env: dict[str, str],
               launcher: str = "", prelude: str = "") -> str:
    """The remote command line for one job (`folder` and `pgid_file` come shell-quoted).

    The job runs in its own session (`setsid`), so its process group holds everything it
    starts and one `kill -- -PGID` ends all of it: on a timeout, a stop, and also when the
    job ends (stragglers it left behind die with it, as for local jobs). The wrapper shell
    waits for the job and exits with its status; stdin passes through fd 3 because a
    background job's stdin is /dev/null.
    """
    inner = f"echo $$ > {pgid_file}; {job_command(command, folder, env, launcher)}"
    outer = (f"{prelude}exec 3<&0; setsid sh -c {shlex.quote(inner)} <&3 3<&- & pg=$!; "
             "wait $pg; status=$?; kill -s KILL -- -$pg 2>/dev/null; exit $status")
    return f"sh -c {shlex.quote(outer)}"


def signal_number(name: str) -> int:
    try:
        return signal.Signals[f"SIG{name}"].value
    except KeyError:
        return 1
