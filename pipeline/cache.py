"""Step outputs reused across runs while their inputs are unchanged.

Extract, labels, features and split are pure functions of their inputs: the config keys they
read, the spec (YAML + SQL), the source's data and the code. A rerun with the same run id (after
a crash or a fault) or a new run on unchanged inputs should not pay for them again, so each
step's outputs are stored once more under `cache/<step>/<key>/` in the artifact store (local
folder or S3), where `key` hashes those inputs. Like a run, a cache entry is trusted only through
its manifest, written last, which lists every object's sha256 and the step's summary; a restored
object whose bytes differ is a miss, never a wrong result.

Keys chain: a step's key includes the key of the step before it (recorded in the run under
`cache/<step>.json`), so a change upstream (a new order in the source) invalidates everything
after it. `cache.enabled: false` (`run --no-cache`) recomputes every step and refreshes its
entry, so the next run reuses the fresh outputs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import Config
from pipeline.storage import MANIFEST, ArtifactStore, RunArtifacts, json_to_bytes

log = logging.getLogger(__name__)

CACHE_PREFIX = "cache"
PACKAGE = "churn-pipeline"


@dataclass(frozen=True)
class StepInputs:
    """What a step's output depends on besides its upstream step's output."""

    config: tuple[str, ...]  # dotted config paths the step reads
    modules: tuple[str, ...]  # modules whose source decides the result
    packages: tuple[str, ...]  # libraries whose version decides the result
    upstream: str | None = None


COMMON_MODULES = ("pipeline.steps", "pipeline.storage")
COMMON_PACKAGES = ("pandas", "pyarrow")
STEPS: dict[str, StepInputs] = {
    "extract": StepInputs(
        ("data.spec", "features.drop_snapshot"), ("pipeline.data.extract", "pipeline.data.db", "pipeline.spec"), ("sqlalchemy",)
    ),
    "labels": StepInputs(("labels",), ("pipeline.labels",), (), upstream="extract"),
    "features": StepInputs(
        ("features",),
        ("pipeline.features", "pipeline.feature_engine", "pipeline.feature_windows", "pipeline.feature_partitions"),
        ("featuretools", "woodwork", "polars", "numpy"),
        upstream="labels",
    ),
    "split": StepInputs(("split",), ("pipeline.preprocess",), ("scikit-learn", "numpy"), upstream="features"),
}


def code_version(modules: tuple[str, ...], packages: tuple[str, ...]) -> dict[str, str]:
    """The package version, a hash of each module's source and the versions of the libraries used:
    an edit to the step's code changes its key even when the package version does not."""
    version = {PACKAGE: importlib.metadata.version(PACKAGE)}
    for name in modules:
        version[name] = module_digest(name)
    for name in packages:
        version[name] = importlib.metadata.version(name)
    return version


@functools.cache
def module_digest(name: str) -> str:
    """Hash of a module's source, read once per process: the code this process runs, even if the
    file is edited on disk while it runs (a later read would key its outputs by code it never ran)."""
    return hashlib.sha256(inspect.getsource(importlib.import_module(name)).encode()).hexdigest()[:16]


def config_values(cfg: Config, paths: tuple[str, ...]) -> dict[str, Any]:
    dumped = cfg.model_dump()
    values = {}
    for path in paths:
        node: Any = dumped
        for part in path.split("."):
            node = node[part]
        values[path] = node
    return values


def cache_key(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StepCache:
    """Run a step through the cache of `store`: restore its outputs into the run on a hit,
    otherwise compute them and store a copy with a manifest written last."""

    store: ArtifactStore
    enabled: bool = True

    def run(
        self,
        cfg: Config,
        art: RunArtifacts,
        step: str,
        outputs: list[str],
        compute: Callable[[], dict[str, Any]],
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The step's summary; `outputs` are the names it writes in the run, `extra` inputs only
        the caller knows (spec hash, source fingerprint). Says in one line when it reuses."""
        inputs = self.inputs(cfg, art, step, extra or {})
        key = cache_key(inputs) if inputs is not None else None
        entry = self._restore(art, step, key, outputs) if key and self.enabled else None
        if entry is not None:
            log.info("%s: reused from cache %s (run %s)", step, key, entry["run_id"])
            summary = entry["summary"]
        else:
            summary = compute()
            if key:
                self._save(art, step, key, inputs, outputs, summary)
        if key:
            art.put_json(f"{CACHE_PREFIX}/{step}", {"key": key, "reused_from": entry["run_id"] if entry else None})
        return summary

    def inputs(self, cfg: Config, art: RunArtifacts, step: str, extra: Mapping[str, Any]) -> dict[str, Any] | None:
        """Everything the step's result depends on; None when the upstream step's key is unknown
        (a run made before caching existed): then the step computes and caches nothing."""
        spec = STEPS[step]
        inputs: dict[str, Any] = {
            "step": step,
            "config": config_values(cfg, spec.config),
            "code": code_version(COMMON_MODULES + spec.modules, COMMON_PACKAGES + spec.packages),
            **extra,
        }
        if spec.upstream:
            name = f"{CACHE_PREFIX}/{spec.upstream}.json"
            if not art.has(name):
                return None
            inputs["upstream"] = art.get_json(f"{CACHE_PREFIX}/{spec.upstream}")["key"]
        return inputs

    def _prefix(self, step: str, key: str) -> str:
        return f"{CACHE_PREFIX}/{step}/{key}"

    def _restore(self, art: RunArtifacts, step: str, key: str, outputs: list[str]) -> dict[str, Any] | None:
        """Copy a complete entry's objects into the run, checking each against the manifest."""
        prefix = self._prefix(step, key)
        if not self.store.exists(f"{prefix}/{MANIFEST}"):
            return None
        entry = json.loads(self.store.get_bytes(f"{prefix}/{MANIFEST}"))
        if sorted(entry["objects"]) != sorted(outputs):
            return None
        restored = {}
        for name, digest in entry["objects"].items():
            data = self.store.get_bytes(f"{prefix}/{name}")
            if hashlib.sha256(data).hexdigest() != digest:
                log.warning("%s: cache entry %s has a damaged %s: recomputing", step, key, name)
                return None
            restored[name] = data
        for name, data in restored.items():
            art.put_bytes(name, data)
        return entry

    def _save(self, art: RunArtifacts, step: str, key: str, inputs: dict[str, Any], outputs: list[str], summary: dict[str, Any]) -> None:
        prefix = self._prefix(step, key)
        digests = {}
        for name in outputs:
            data = art.get_bytes(name)
            self.store.put_bytes(f"{prefix}/{name}", data)
            digests[name] = hashlib.sha256(data).hexdigest()
        entry = {"step": step, "key": key, "run_id": art.run_id, "inputs": inputs, "objects": digests, "summary": summary}
        self.store.put_bytes(f"{prefix}/{MANIFEST}", json_to_bytes(entry))  # last: marks the entry complete
        log.info("%s: computed, cached as %s", step, key)
