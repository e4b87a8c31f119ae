"""Workers: where evaluations run. `local` slots here; `ssh` hosts in ssh.py; `pool` hands
them out to the loop."""
