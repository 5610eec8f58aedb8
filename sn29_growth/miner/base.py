"""Find the model to grow: the competition's current best on chain, or a model the user names.

The current best is the committed model of the competition whose hotkey has the highest incentive
(validators' weights, as the chain aggregates them); ties — a fresh subnet where nobody has incentive
yet — go to the oldest commitment, which holds the advantage. A committed model is fetched and checked
as a validator does: file sizes against the competition before any download, then the checks on the
config, then the salted content hash of the downloaded files against the commitment. A model that fails
is skipped and the next best is tried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sn29_growth.chain.commitment import ModelCommitment, content_hash
from sn29_growth.chain.protocol import ChainClient, RawCommitment
from sn29_growth.checkpoint import read_config
from sn29_growth.eval import checks
from sn29_growth.eval.competitions import Competition
from sn29_growth.hub.protocol import is_commit_sha
from sn29_growth.hub.store import ModelStore
from sn29_growth.modelref import ModelRef

log = logging.getLogger(__name__)


class BaseNotFound(RuntimeError):
    """No usable base model: nothing committed in the competition, or every candidate failed its checks."""


@dataclass(frozen=True)
class Committed:
    """A parsed commitment of the competition, with what the chain says about its hotkey."""

    raw: RawCommitment
    model: ModelCommitment
    incentive: float

    @property
    def label(self) -> str:
        return f"uid {self.raw.uid} {self.model.repo_id}@{self.model.commit[:10]}"


@dataclass(frozen=True)
class BaseModel:
    """The model a miner grows. ``committed`` is set when it is (or matches) a chain commitment."""

    path: Path
    label: str
    committed: Committed | None = None

    @property
    def block(self) -> int | None:
        return self.committed.raw.block if self.committed else None

    def to_dict(self) -> dict:
        out = {"path": str(self.path), "label": self.label}
        if self.committed:
            c = self.committed
            out.update(
                uid=c.raw.uid,
                hotkey=c.raw.hotkey,
                block=c.raw.block,
                commitment=c.raw.value,
                incentive=c.incentive,
            )
        return out


def ranked_commitments(chain: ChainClient, competition: str) -> list[Committed]:
    """Valid commitments of ``competition``, best first: highest incentive, then oldest block, then uid.

    Several hotkeys committing the same repo and commit: only the earliest counts (as for validators).
    """
    raw = chain.commitments()
    incentive = {n.hotkey: n.incentive for n in chain.metagraph()} if raw else {}
    found: list[Committed] = []
    for rc in raw.values():
        try:
            mc = ModelCommitment.parse(rc.value)
        except ValueError:
            continue
        if mc.competition == competition:
            found.append(Committed(rc, mc, float(incentive.get(rc.hotkey, 0.0))))
    first: dict[tuple[str, str], Committed] = {}
    for c in sorted(found, key=lambda c: (c.raw.block, c.raw.uid)):
        first.setdefault((c.model.repo_id, c.model.commit), c)
    unique = list(first.values())
    unique.sort(key=lambda c: (-c.incentive, c.raw.block, c.raw.uid))
    return unique


def fetch_committed(c: Committed, competition: Competition, store: ModelStore) -> Path:
    """Download a committed model and check it as a validator would.

    Raises ValueError (the reason a validator would reject it) or HubError (the Hub failed).
    """
    mc = c.model
    path = fetch_checked(store, mc.repo_id, mc.commit, competition)
    actual = content_hash(path, c.raw.hotkey)
    if actual != mc.hash:
        raise ValueError(f"content hash mismatch (committed {mc.hash}, files hash to {actual})")
    return path


def fetch_checked(store: ModelStore, repo_id: str, commit: str, competition: Competition) -> Path:
    """Sizes from the Hub against the competition before any download, then the config checks."""
    plan = store.plan(repo_id, commit)
    reason = checks.check_files({f.path: f.size for f in plan.files}, competition)
    if reason:
        raise ValueError(reason)
    path = Path(store.fetch(repo_id, plan.commit))
    reason = checks.precheck(read_config(path), checks.local_files(path), competition)
    if reason:
        raise ValueError(reason)
    return path


PROBE_SAMPLES = 4
PROBE_TIMEOUT_S = 600.0


def probe_in_worker(path: Path, competition: Competition, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Score ``path`` on a few embedded samples in a worker process a timeout kills, as a validator
    would: its tokenizer, weights and forward pass. Returns why it cannot be scored, or None.

    A model on chain is anyone's upload: this is what keeps a tokenizer that hangs or panics, or weights
    that crash the loader, from stopping the miner that would grow it.
    """
    from sn29_growth.eval.evaluate import evaluate_models

    result = evaluate_models(
        [path],
        names=["base"],
        competition=competition,
        dataset="local",
        samples=PROBE_SAMPLES,
        cache_dir=False,
        device="cpu",
        isolate=True,
        timeout_s=timeout_s,
    )
    row = result.models[0]
    if row.rejection:
        return row.rejection
    if row.n_inf == len(row.losses):
        return "every probe sample scores +inf"
    return None


def best_on_chain(
    chain: ChainClient,
    competition: Competition,
    store: ModelStore,
    *,
    limit: int = 5,
    probe_timeout_s: float = PROBE_TIMEOUT_S,
) -> tuple[BaseModel, list[str]]:
    """The best committed model that passes the checks (trying at most ``limit``), and why others failed.

    Each candidate is checked as a validator checks it, then probed in a worker process
    (:func:`probe_in_worker`); whatever a candidate's files do, it is skipped with a reason.
    """
    problems: list[str] = []
    for c in ranked_commitments(chain, competition.name)[:limit]:
        try:
            path = fetch_committed(c, competition, store)
            reason = probe_in_worker(path, competition, probe_timeout_s)
            if reason:
                raise ValueError(reason)
        except Exception as e:  # anyone's upload: nothing it holds may stop the miner
            problems.append(
                f"{c.label}: {e}" if isinstance(e, ValueError) else f"{c.label}: {type(e).__name__}: {e}"
            )
            log.warning("skipping %s", problems[-1])
            continue
        log.info(
            "current best of %s: %s (incentive %.4f, block %d)",
            competition.name,
            c.label,
            c.incentive,
            c.raw.block,
        )
        return BaseModel(path, c.model.repo_id, c), problems
    detail = "; ".join(problems) or "no commitment in this competition"
    raise BaseNotFound(f"no usable base model in {competition.name} on chain: {detail}")


def find_base(
    spec: str | None, competition: Competition, chain: ChainClient, store: ModelStore | None
) -> BaseModel:
    """``spec`` None: the chain's current best. Else a local directory or ``namespace/name[@revision]``.

    A Hub reference that matches a chain commitment (same repository and commit) is hash-checked
    against it and carries its block (for the advantage in the "would it win" check).
    """
    if spec is None:
        if store is None:
            raise BaseNotFound("no --base given and no Hub client to fetch the chain's best model")
        return best_on_chain(chain, competition, store)[0]
    local = Path(spec).expanduser()
    if local.is_dir():
        reason = checks.precheck(read_config(local), checks.local_files(local), competition)
        if reason:
            raise ValueError(f"--base {spec}: {reason}")
        return BaseModel(local.resolve(), local.name)
    if store is None:
        raise BaseNotFound(f"--base {spec}: not a local directory and no Hub client is configured")
    try:
        ref = ModelRef.hub(spec)
    except ValueError as e:
        raise ValueError(f"--base {spec}: neither a directory nor namespace/name[@revision] ({e})") from None
    commit = (
        ref.revision
        if is_commit_sha(ref.revision)
        else store.client.resolve_revision(ref.repo_id, ref.revision)
    )
    for c in ranked_commitments(chain, competition.name):
        if (c.model.repo_id, c.model.commit) == (ref.repo_id, commit):
            return BaseModel(fetch_committed(c, competition, store), ref.repo_id, c)
    try:
        path = fetch_checked(store, ref.repo_id, commit, competition)
    except ValueError as e:
        raise ValueError(f"--base {spec}: {e}") from None
    return BaseModel(path, f"{ref.repo_id}@{commit[:10]}")
