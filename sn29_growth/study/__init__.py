"""Growth-strategy study (``sn29 study``): one base model, one target shape, every growth strategy.

Modules: :mod:`.config` (the YAML config), :mod:`.arms` (each arm's starting checkpoint, including the
non-preserving depth copy), :mod:`.runner` (base and arm training on equal terms), :mod:`.token_data`
(single-epoch slices of a token corpus folder, :mod:`.tokens`), :mod:`.speedup` (tokens to beat the base
and to reach scratch's loss, speed-ups over scratch), :mod:`.report` (statistics over seeds,
JSON/CSV/Markdown), :mod:`.plot` (PNG).
"""

from sn29_growth.study.config import (
    ArmConfig,
    BaseConfig,
    PhaseConfig,
    StudyConfig,
    load_study_config,
    parse_study,
    study_from_dict,
)
from sn29_growth.study.report import ArmSummary, summarize, write_report
from sn29_growth.study.runner import StudyRun, run_study

__all__ = [
    "ArmConfig",
    "ArmSummary",
    "BaseConfig",
    "PhaseConfig",
    "StudyConfig",
    "StudyRun",
    "load_study_config",
    "parse_study",
    "run_study",
    "study_from_dict",
    "summarize",
    "write_report",
]
