"""The promotion gate: challenger against champion, re-measured side by side.

Both `@challenger` and the current `@champion` are loaded from the registry (as
the pyfunc models the server will run) and score the same pinned evaluation
manifest in the same step; stored metrics are never trusted, since the champion
may have been scored on other data or by older code. When one pipeline run
registered several challengers (one per detector family), all of them are
measured on the same clips and the best on the metric stands for the run
(`GateDecision.challenger`; the others are kept in `other_challengers`).
Then, on `GateConfig.metric`:

- reject: the challenger is below `absolute_floor` (or could not be scored);
- promote: there is no champion, or the challenger beats it by at least
  `min_improvement` (and strictly: a tie never displaces a champion);
- keep: otherwise (also when the challenger already is the champion).

What they are measured on (`asdflow.evaluation.gate_evidence`): the labelled
anomalies and normals of the evaluation split when it has labelled anomalies
(`labelled`); otherwise held-out normal clips no model trained on plus
anomalies simulated from them (`simulated`), the plant's usual case. Either way
each model's false-alarm rate on those normals at its own threshold is reported.

The decision record `gate_decision.json` (the evidence, both scores, versions,
thresholds, false-alarm rates, verdict, reason, the evaluation set's digest) is
written to `out_dir` and logged to the challenger's run under `gate/`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from asdflow.config import AsdflowConfig, GateConfig, TrackingConfig
from asdflow.data.manifest import ClipRecord, Manifest
from asdflow.errors import AsdflowError, EvaluationError, one_line
from asdflow.evaluation.gate_evidence import Evidence, EvidencePlan, SimulatedScore, plan_evidence, simulated_anomalies
from asdflow.registry.models import (
    CHALLENGER,
    CHAMPION,
    PromotionResult,
    RegistryError,
    alias_version,
    model_name,
    promote,
)

DECISION_FILE = "gate_decision.json"
SCORES_PREFIX = "gate_scores_v"  # gate_scores_v<version>.csv beside the decision: every judged clip's score
Verdict = Literal["promote", "keep", "reject"]
SCORE_BATCH = 32  # clips per pyfunc predict call


class CandidateResult(BaseModel):
    """One model as the gate measured it on the evaluation set."""

    # a model that could not be scored has NaN scores; keep them NaN through the JSON record
    model_config = ConfigDict(ser_json_inf_nan="constants")

    alias: str
    version: str
    model_uri: str
    run_id: str | None = None
    detector_family: str | None = None
    threshold: float | None = None
    score: float  # the gate metric
    official: float
    auc_source: float
    auc_target: float
    pauc: float
    n_flagged: int  # evaluation clips above the model's threshold
    false_alarm_rate: float = float("nan")  # of the judged normal clips, at the model's own threshold
    seconds: float
    error: str | None = None  # why it could not be scored (score is then NaN)


class GateDecision(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    machine_type: str
    model_name: str
    verdict: Verdict
    reason: str
    metric: str
    absolute_floor: float
    min_improvement: float
    challenger: CandidateResult  # the best of the challengers measured
    other_challengers: list[CandidateResult] = Field(default_factory=list)  # the rest, best first
    champion: CandidateResult | None = None
    champion_version_seen: str | None = None  # what promote() must still find at @champion
    improvement: float | None = None  # challenger - champion on the metric
    evidence: Evidence = "labelled"  # labelled anomalies, or held-out normals + simulated anomalies
    evidence_source: str = ""  # where the normal clips came from
    eval_root: str
    eval_digest: str
    n_eval_clips: int
    n_normal_clips: int = 0
    n_anomalous_clips: int = 0
    simulated_kinds: list[str] = Field(default_factory=list)
    decided_at: str
    record_path: str | None = None
    logged_to_run: str | None = None
    promotion: PromotionResult | None = None  # filled by apply_decision
    extra: dict[str, str] = Field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / DECISION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.record_path = str(path)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GateDecision":
        path = Path(path)
        path = path / DECISION_FILE if path.is_dir() else path
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValueError) as err:
            raise AsdflowError(f"cannot read a gate decision from {path}: {err}") from None


def _configs(config: AsdflowConfig | GateConfig, tracking: TrackingConfig | None) -> tuple[GateConfig, TrackingConfig]:
    if isinstance(config, AsdflowConfig):
        return config.gate, tracking or config.tracking
    return config, tracking or TrackingConfig()


def run_gate(
    machine_type: str,
    eval_manifest: Manifest,
    config: AsdflowConfig | GateConfig,
    out_dir: str | Path,
    *,
    tracking: TrackingConfig | None = None,
    project_dir: str | Path | None = None,
    challenger_version: str | int | list[str | int] | None = None,
    progress: bool = False,
) -> GateDecision:
    """Score `@challenger` (or `challenger_version`: one version, a list, or "3,4,5") and the
    current `@champion` on the evidence `eval_manifest` gives for `machine_type` (labelled test
    clips, else held-out normals and anomalies simulated from them), decide for the best challenger, write `out_dir/gate_decision.json`, log it to that
    challenger's run. Never moves an alias (see `apply_decision`).
    """
    import mlflow

    from asdflow.registry.tracking import artifact_progress, manifest_digest, tracking_client

    gate, tracking = _configs(config, tracking)
    client = tracking_client(tracking, project_dir)
    name = model_name(machine_type, tracking)

    challengers = challenger_versions(challenger_version) or [v for v in [alias_version(client, name, CHALLENGER)] if v]
    if not challengers:
        raise RegistryError(f"{name} has no @{CHALLENGER}: register a {machine_type} detector before the gate")
    champion = alias_version(client, name, CHAMPION)

    plan = plan_evidence(eval_manifest, machine_type, gate)
    if not plan.normals or (plan.evidence == "labelled" and not plan.anomalies):
        raise EvaluationError(
            f"the evaluation manifest {eval_manifest.root} has no {machine_type} clips the gate can judge on "
            f"({plan.source}: {len(plan.normals)} normal, {len(plan.anomalies)} anomalous)"
        )
    judged = _Judged(plan, gate, progress)

    with artifact_progress(progress):
        candidates = [_measure(client, name, version, CHALLENGER, judged, gate) for version in challengers]
        # best first; a challenger that could not be scored sorts last; a tie keeps the earlier registration
        candidates.sort(key=lambda c: -c.score if math.isfinite(c.score) else math.inf)
        measured = {CHALLENGER: candidates[0]}
        challenger = candidates[0].version
        if champion is not None and champion not in challengers:
            measured[CHAMPION] = _measure(client, name, champion, CHAMPION, judged, gate)
        elif champion is not None and champion != challenger:  # the champion was handed in among the challengers
            seen = next(c for c in candidates if c.version == champion)
            measured[CHAMPION] = seen.model_copy(update={"alias": CHAMPION})

    verdict, reason, improvement = _decide(measured[CHALLENGER], measured.get(CHAMPION), champion, gate)
    if plan.evidence == "simulated":
        reason += (f" (no labelled anomalies: judged on {len(plan.normals)} held-out normals and "
                   f"{judged.n_anomalies} anomalies simulated from them)")
    decision = GateDecision(
        machine_type=machine_type,
        model_name=name,
        verdict=verdict,
        reason=reason,
        metric=gate.metric,
        absolute_floor=gate.absolute_floor,
        min_improvement=gate.min_improvement,
        challenger=measured[CHALLENGER],
        other_challengers=candidates[1:],
        champion=measured.get(CHAMPION),
        champion_version_seen=champion,
        improvement=improvement,
        evidence=plan.evidence,
        evidence_source=plan.source,
        eval_root=str(eval_manifest.root),
        eval_digest=manifest_digest(Manifest(root=eval_manifest.root, records=plan.records)),
        n_eval_clips=len(plan.normals) + judged.n_anomalies,
        n_normal_clips=len(plan.normals),
        n_anomalous_clips=judged.n_anomalies,
        simulated_kinds=list(gate.simulated_kinds) if plan.evidence == "simulated" else [],
        decided_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    path = decision.save(out_dir)
    for version, frame in judged.scored.items():  # per clip, as each model scored it (what the server would)
        frame.to_csv(Path(out_dir) / f"{SCORES_PREFIX}{version}.csv", index=False, float_format="%.17g")
    run_id = measured[CHALLENGER].run_id
    try:
        if run_id is None:
            experiment = client.get_experiment_by_name(tracking.experiment)
            run_id = client.create_run(experiment.experiment_id, run_name=f"gate-{machine_type}").info.run_id
            client.set_terminated(run_id)
        decision.logged_to_run = run_id
        path = decision.save(out_dir)
        client.log_artifact(run_id, str(path), artifact_path="gate")
        client.set_tag(run_id, "gate_verdict", verdict)
        for candidate in candidates:
            outcome = verdict if candidate.version == challenger else f"not best (v{challenger} was)"
            client.set_model_version_tag(name, candidate.version, "gate_verdict", outcome)
            client.set_model_version_tag(name, candidate.version, f"gate_{gate.metric}", repr(candidate.score))
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(f"gate decided {verdict} but could not record it in MLflow: {one_line(err)}") from None
    return decision


def challenger_versions(value: str | int | list[str | int] | None) -> list[str]:
    """Versions as the pipeline hands them over: one, a list, or comma-separated ("3,4,5"); order kept, no repeats."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    versions: list[str] = []
    for item in items:
        text = str(item).strip()
        if text and text not in versions:
            versions.append(text)
    return versions


def apply_decision(
    decision: GateDecision,
    config: AsdflowConfig | TrackingConfig | None = None,
    project_dir: str | Path | None = None,
) -> GateDecision:
    """Promote the challenger when the verdict says so (guarded by the champion the gate saw);
    otherwise leave the registry alone. Rewrites the decision record with the outcome."""
    if decision.verdict == "promote":
        decision.promotion = promote(
            decision.machine_type,
            decision.challenger.version,
            expected_champion=decision.champion_version_seen,
            config=config,
            project_dir=project_dir,
            reason=decision.reason,
        )
        if decision.record_path:
            path = decision.save(Path(decision.record_path).parent)
            if decision.logged_to_run:
                from asdflow.registry.tracking import tracking_client

                tracking = config.tracking if isinstance(config, AsdflowConfig) else config or TrackingConfig()
                tracking_client(tracking, project_dir).log_artifact(decision.logged_to_run, str(path), artifact_path="gate")
    return decision


def apply_decision_file(
    decision_path: str | Path,
    out_dir: str | Path,
    config: AsdflowConfig | TrackingConfig | None = None,
    project_dir: str | Path | None = None,
) -> GateDecision:
    """The promote stage: read the gate's decision from `decision_path`, record it into `out_dir`
    (the outcome goes there, never into the gate's own record) and apply it (`apply_decision`)."""
    decision = GateDecision.load(decision_path)
    decision.save(out_dir)
    return apply_decision(decision, config, project_dir)


def _decide(
    challenger: CandidateResult, champion: CandidateResult | None, champion_version: str | None, gate: GateConfig
) -> tuple[Verdict, str, float | None]:
    metric, ch = gate.metric, challenger.score
    if challenger.error or not math.isfinite(ch):
        return "reject", f"challenger v{challenger.version} could not be scored: {challenger.error}", None
    if ch < gate.absolute_floor:
        return ("reject",
                f"challenger v{challenger.version} {metric} {ch:.4f} is below the absolute floor {gate.absolute_floor:.4f}",
                None)
    if champion_version is None:
        return "promote", f"no champion yet; challenger v{challenger.version} {metric} {ch:.4f} clears the floor", None
    if champion is None:  # the challenger already is the champion
        return "keep", f"challenger v{challenger.version} already is the champion", 0.0
    if champion.error or not math.isfinite(champion.score):
        # a champion that no longer loads or scores must not block a good challenger
        return ("promote",
                f"champion v{champion.version} could not be scored ({champion.error}); challenger v{challenger.version} "
                f"{metric} {ch:.4f} clears the floor", None)
    gain = ch - champion.score
    if gain > 0 and gain >= gate.min_improvement:
        return ("promote",
                f"challenger v{challenger.version} {metric} {ch:.4f} beats champion v{champion.version} "
                f"{champion.score:.4f} by {gain:+.4f} (minimum {gate.min_improvement:.4f})", gain)
    return ("keep",
            f"challenger v{challenger.version} {metric} {ch:.4f} does not beat champion v{champion.version} "
            f"{champion.score:.4f} by the minimum {gate.min_improvement:.4f} (difference {gain:+.4f})", gain)


class _Judged:
    """The clips every model is judged on, decoded once per sample rate and shared by all models;
    simulated anomalies are made once per sample rate from the held-out normals."""

    def __init__(self, plan: EvidencePlan, gate: GateConfig, progress: bool):
        self.plan, self.gate, self.progress = plan, gate, progress
        self._cache: dict[int, tuple[list[ClipRecord], list[np.ndarray]]] = {}
        self.scored: dict[str, pd.DataFrame] = {}  # version -> each judged clip's score and decision

    def clips(self, sample_rate: int) -> tuple[list[ClipRecord], list[np.ndarray]]:
        if sample_rate not in self._cache:
            from asdflow.data.audio import load_audio
            from asdflow.progress import progress_bar

            records = self.plan.records
            waveforms = [load_audio(r.path, sample_rate)
                         for r in progress_bar(records, desc="gate: loading clips", enabled=self.progress)]
            if self.plan.evidence == "simulated":
                made, made_waves = simulated_anomalies(self.plan.normals, waveforms, sample_rate, self.gate)
                records, waveforms = records + made, waveforms + made_waves
            self._cache[sample_rate] = (records, waveforms)
        return self._cache[sample_rate]

    @property
    def n_anomalies(self) -> int:
        if self.plan.evidence == "labelled" or not self._cache:
            return len(self.plan.anomalies)
        records, _ = next(iter(self._cache.values()))
        return len(records) - len(self.plan.normals)

    def metrics(self, records: list[ClipRecord], scores: np.ndarray) -> dict[str, float]:
        """official, auc_source, auc_target, pauc of one model's scores on the judged clips."""
        n = len(self.plan.normals)
        if self.plan.evidence == "labelled":
            from asdflow.evaluation.metrics import evaluate_scores, ground_truth_from_manifest

            truth = ground_truth_from_manifest(Manifest(root="", records=records))
            report = evaluate_scores(truth, {r.name: float(v) for r, v in zip(records, scores)}, partial=True)
            summary = report.machine_types.get(records[0].machine_type, report.overall)
            return {k: float(getattr(summary, k)) for k in ("official", "auc_source", "auc_target", "pauc")}
        from asdflow.evaluation.metrics import MAX_FPR

        judged = SimulatedScore(records[:n], scores[:n], scores[n:], max_fpr=MAX_FPR)
        return {k: float(getattr(judged, k)) for k in ("official", "auc_source", "auc_target", "pauc")}


def _measure(client, name: str, version: str, alias: str, judged: _Judged, gate: GateConfig) -> CandidateResult:
    """Load one registered version as a pyfunc and score the judged clips through its predict(),
    exactly as the server does."""
    import mlflow.pyfunc

    started = time.perf_counter()
    uri = f"models:/{name}/{version}"  # pinned by number: the alias may move meanwhile
    tags: dict[str, str] = {}
    run_id = family = None
    threshold = None
    try:
        mv = client.get_model_version(name, version)
        tags, run_id = dict(mv.tags or {}), mv.run_id or None
        model = mlflow.pyfunc.load_model(uri)
        detector = model.unwrap_python_model().detector
        family, threshold = detector.family, detector.threshold
        records, waveforms = judged.clips(int(detector.features.sample_rate))
        with_records = bool(getattr(detector, "uses_records", False))
        frames = [_input_frame(records[i:i + SCORE_BATCH], waveforms[i:i + SCORE_BATCH], with_records)
                  for i in range(0, len(records), SCORE_BATCH)]
        out = pd.concat([model.predict(f) for f in frames], ignore_index=True)
        scores = np.asarray(out["score"], dtype=np.float64)
        flagged = np.asarray(out["decision"], dtype=bool)
        judged.scored[version] = pd.DataFrame({
            "name": [r.name for r in records], "domain": [r.domain or "" for r in records],
            "label": [r.label or "" for r in records], "score": scores, "decision": flagged})
        metrics = judged.metrics(records, scores)
        value = metrics[gate.metric]
        if not math.isfinite(value) and judged.plan.evidence == "simulated":
            value = metrics["official"]  # e.g. auc_target of a plant with one domain: judged on what exists
        n_normals = len(judged.plan.normals)
        return CandidateResult(
            alias=alias, version=version, model_uri=uri, run_id=run_id, detector_family=family,
            threshold=threshold, score=value, official=metrics["official"], auc_source=metrics["auc_source"],
            auc_target=metrics["auc_target"], pauc=metrics["pauc"], n_flagged=int(flagged.sum()),
            false_alarm_rate=float(flagged[:n_normals].mean()), seconds=time.perf_counter() - started,
        )
    except Exception as err:  # noqa: BLE001 - a model that fails is judged, not allowed to crash the gate
        nan = float("nan")
        return CandidateResult(
            alias=alias, version=version, model_uri=uri, run_id=run_id or tags.get("run_id"),
            detector_family=family or tags.get("detector_family"), threshold=threshold, score=nan,
            official=nan, auc_source=nan, auc_target=nan, pauc=nan, n_flagged=0,
            seconds=time.perf_counter() - started, error=f"{type(err).__name__}: {one_line(err)}",
        )


def _input_frame(records: list[ClipRecord], waveforms: list[np.ndarray], with_records: bool) -> pd.DataFrame:
    """The pyfunc's input: waveforms only (scored in one batch), plus each clip's domain, section and
    attributes (JSON, the signature's string column) for a family that conditions on them."""
    frame = pd.DataFrame({"waveform": list(waveforms)})
    if with_records:
        frame["domain"] = [r.domain or "" for r in records]
        frame["section"] = [r.section for r in records]
        frame["attributes"] = [json.dumps(r.attributes, sort_keys=True) for r in records]
    return frame
