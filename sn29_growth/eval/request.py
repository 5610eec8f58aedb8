"""The worker side of an isolated evaluation (the validator's, and `sn29 evaluate`'s): request JSON in, per-model
per-sample losses out.

Runs inside the child process started by :func:`sn29_growth.eval.worker.run_in_worker`, so that a
hung or crashing evaluation cannot take the validator with it. Scoring happens in the parent.
"""

from __future__ import annotations

import math
from typing import Any

from sn29_growth.eval.competitions import Competition


def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the request's models; ``samples_file`` (a fixed sample set) or ``dataset`` says on what.
    When the host cannot evaluate (:mod:`sn29_growth.eval.environment`) the answer is only
    ``{"environment_error": cause}``: no model is blamed."""
    from pathlib import Path

    from sn29_growth.checkpoint import TOKENIZER_JSON_LIMITS, read_json_object
    from sn29_growth.eval.data import FixedSource
    from sn29_growth.eval.environment import EnvironmentFailure, device_problem

    problem = device_problem(request.get("device") or "cpu")  # before anything of the model is read
    if problem:
        return {"environment_error": problem}
    comp_dict = dict(request["competition"])
    competition = Competition.from_dict(comp_dict.pop("name"), comp_dict)
    models = request["models"]
    if request.get("samples_file"):
        dataset: Any = FixedSource.from_json(
            read_json_object(Path(request["samples_file"]), TOKENIZER_JSON_LIMITS)
        )
    else:
        dataset = request.get("dataset") or "local"
    try:
        result = _evaluate(request, competition, models, dataset)
    except EnvironmentFailure as e:
        return {"environment_error": str(e)}
    out: dict[str, Any] = {}
    for row in result.models:
        data = row.to_json()
        data["losses"] = None if row.rejection else [v if math.isfinite(v) else None for v in row.losses]
        out[row.name] = data
    return {"models": out, "sample_ids": list(result.sample_ids), "dataset": result.dataset}


def _evaluate(request: dict[str, Any], competition: Competition, models, dataset):
    from sn29_growth.eval.evaluate import evaluate_models

    return evaluate_models(
        [m["path"] for m in models],
        names=[m["key"] for m in models],
        content_hashes=[m.get("content_hash") for m in models],
        competition=competition,
        dataset=dataset,
        samples=request.get("samples"),
        seed=int(request.get("seed", 0)),
        device=request.get("device") or "cpu",
        cache_dir=request.get("cache_dir", True),  # None: no cache (--no-cache)
        allow_bos=bool(request.get("allow_bos", False)),
        free_tokenizer=request.get("free_tokenizer"),
        fallback_tokenizer=request.get("fallback_tokenizer"),
    )
