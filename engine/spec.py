"""Specs: one YAML file defines a run. Loaded into pydantic models and validated before
anything runs; every error names `file:line`, the field, and what was expected.

The models live by section and the loading on its own; every name is kept here, so
`from engine import spec as specs; specs.Spec` and `from engine.spec import load_spec` work:

- engine/specbase.py: `Strict`, `SpecError`, `compiled` (a regex that must compile)
- engine/spectarget.py: `target:` (`Target`, `DEFAULT_IGNORE`)
- engine/specmutators.py: `mutator:` (params, llm, agent) and `LLMSettings`
- engine/specevaluate.py: `evaluate:` (checklist and its items, metric, tests)
- engine/specloop.py: `decide:`, `stop:`, `search:`
- engine/specworkers.py: `workers:` (local, SSH, SLURM), `screen:`, `promote:`
- engine/specmodel.py: the whole `Spec` and its tiers check (`TierError`)
- engine/specload.py: parsing, `file:line` errors, `load_spec`, file checks, notes
"""

from __future__ import annotations

# Re-exported: the names this module has always offered (a pure move, see above).
from engine.libspec import Library, Retention  # noqa: F401
from engine.model import UserError  # noqa: F401
from engine.notify import NotifyHook  # noqa: F401
from engine.specbase import SpecError, Strict, compiled  # noqa: F401
from engine.specevaluate import (  # noqa: F401
    ChecklistEval,
    Constraint,
    Evaluate,
    HoldoutSplit,
    Item,
    JsonCheck,
    JudgeSettings,
    MetricEval,
    Produce,
    ProduceCommand,
    ProduceLLM,
    TestsEval,
    WordBounds,
)
from engine.specload import (  # noqa: F401
    _all_keys,
    _closest_key,
    _explain,
    _line_for,
    _parse,
    _shown_key,
    check_notes,
    check_spec_files,
    checklist_warnings,
    load_spec,
    parse_spec,
)
from engine.specloop import Decide, Search, Stop  # noqa: F401
from engine.specmodel import Spec, TierError  # noqa: F401
from engine.specmutators import (  # noqa: F401
    AgentMutator,
    LLMMutator,
    LLMSettings,
    Mutator,
    Param,
    ParamsMutator,
)
from engine.spectarget import DEFAULT_IGNORE, Target  # noqa: F401
from engine.specworkers import (  # noqa: F401
    SLURM_TIME,
    LocalWorker,
    Promote,
    RemoteWorker,
    Screen,
    SlurmWorker,
    SSHWorker,
    Worker,
)
