"""The spec's `workers:` section (local, SSH, SLURM) and its tiers (`screen:`, `promote:`)."""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from engine.specbase import Strict


class LocalWorker(Strict):
    kind: Literal["local"]
    slots: int = Field(default=1, ge=1)
    group: str = "default"


class RemoteWorker(Strict):
    """What SSH and SLURM workers share: a host reached over SSH (for SLURM, the login node),
    its slots, and how the connection is made and watched (engine/workers/sshhost.py)."""

    #: A `~/.ssh/config` alias or `user@host:port`.
    host: str
    slots: int = Field(default=1, ge=1)
    env: dict[str, str] = {}
    group: str = "default"
    #: Accept a host key not in known_hosts (off by default).
    trust_unknown_host: bool = False
    known_hosts: str | None = None
    identity: str | None = None
    ssh_config: str | None = None
    #: Seconds between SSH keepalives; three missed ones mean the host hangs (heartbeat).
    heartbeat_s: float = Field(default=15, gt=0)
    connect_timeout_s: float = Field(default=15, gt=0)
    #: First wait before a failed host is tried again (doubles with each failure).
    backoff_s: float = Field(default=5, gt=0)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an environment variable name")
        return env


class SSHWorker(RemoteWorker):
    kind: Literal["ssh"]
    workdir: str = "/tmp/autoresearch"
    launcher: str = ""
    #: Names passed through from the engine's environment (the values never enter the spec);
    #: they, and `env` names in `secret` or that look secret, are masked in whatever is stored.
    env_from: list[str] = []
    secret: list[str] = []

    def environment(self) -> dict[str, str]:
        """What the worker's commands get: `env_from` from the engine's environment, then `env`."""
        return {**{k: os.environ[k] for k in self.env_from if k in os.environ}, **self.env}


#: A SLURM time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
SLURM_TIME = r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$"


class SlurmWorker(RemoteWorker):
    """Slots on a SLURM cluster, reached over SSH at a login node (engine/workers/slurm.py)."""

    kind: Literal["slurm"]
    partition: str | None = None
    #: `--gres` of each job (per-job) or of the held allocation (hold).
    gres: str | None = None
    #: Time limit of each job (per-job) or of the held allocation (hold), in SLURM's format.
    time: str | None = None
    #: `hold`: one allocation for the run, an evaluation is a step in it; `per-job`: one
    #: job per evaluation.
    allocation: Literal["hold", "per-job"] = "hold"
    sbatch_args: list[str] = []
    srun_args: list[str] = []
    #: A folder on the login node that the compute nodes see too (a shared filesystem).
    workdir: str = "~/autoresearch"
    #: Hold: a successor allocation is asked for when the current one has less left
    #: (default: 10 minutes, or half the time limit if that is shorter).
    renew_before_s: float | None = Field(default=None, gt=0)
    #: Seconds a job may wait in the queue before the slot counts as failed (none: forever).
    queue_timeout_s: float | None = Field(default=None, gt=0)
    #: Seconds between `squeue` polls while jobs wait.
    poll_s: float = Field(default=2, gt=0)

    @field_validator("time", mode="before")
    @classmethod
    def _slurm_time(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `time: 30` is thirty minutes, as for sbatch
        if value is not None and not (isinstance(value, str) and re.match(SLURM_TIME, value)):
            raise ValueError(f"{value!r} is not a SLURM time (MINUTES, MM:SS, HH:MM:SS or "
                             "D-HH:MM:SS)")
        return value


Worker = Annotated[LocalWorker | SSHWorker | SlurmWorker, Field(discriminator="kind")]


class Screen(Strict):
    """A cheaper first tier: every candidate of a wave is scored here first."""

    #: Worker group of the screen tier (e.g. the cheaper GPUs).
    group: str | None = None
    #: Checklist: samples per input, and how many of the inputs (the first N).
    samples: int | None = Field(default=None, ge=1)
    inputs: int | None = Field(default=None, ge=1)
    #: The evaluation's time budget in this tier (metric/tests command, checklist producer).
    timeout_s: float | None = Field(default=None, gt=0)
    #: Metric/tests: a different command for screening (e.g. a shorter training run).
    command: str | None = None
    #: Extra environment for the screen tier's commands (AUTORESEARCH_TIER is always set).
    env: dict[str, str] = {}


class Promote(Strict):
    """Which screened candidates go on to the full tier."""

    #: At most this many per wave: the best screen scores that beat the best version's.
    top_k: int = Field(default=1, ge=1)
    #: Worker group of the full tier.
    group: str | None = None
