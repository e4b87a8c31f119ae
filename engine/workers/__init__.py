"""Workers: where evaluations run.

local.py     slots on this machine
ssh.py       slots on SSH hosts (sshhost.py: connections and host keys; remote.py: the shell
             text that runs on the far side)
slurm.py     slots on a SLURM cluster behind a login node: steps of a held allocation, or a
             job per evaluation (slurmcluster.py: its jobs and allocation; slurmjobs.py:
             SLURM's command lines and answers)
pool.py      hands slots out by group, marks failed ones down with backoff
tiers.py     the full tier and the cheaper screen tier an evaluation can run in
faults.py    WorkerFailed (retry elsewhere) versus a command's own failure (a verdict)
output.py    bounded capture of streamed output
"""
