"""One typed configuration, loaded from YAML with environment-variable overrides.

Order of precedence (later wins): packaged `defaults.yaml` < the user's YAML file
< `PIPELINE__SECTION__KEY=value` environment variables < `--set section.key=value`.
pydantic-settings reads the environment; lists and mappings in
a variable are YAML (`PIPELINE__FEATURES__WINDOWS='[30d, 90d]'`), an empty value is null.
Unknown keys (in any layer) and wrong types stop the run before any work, with a
message naming the key.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from pipeline.masking import mask_url, mask_value

DEFAULTS = Path(__file__).with_name("defaults.yaml")
ENV_PREFIX = "PIPELINE__"
WINDOW_PATTERN = r"^(\d+)([dhw])$"  # a time window before the cutoff: 30d, 12h, 2w (pipeline.feature_windows)


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and how to fix it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsConfig(Section):
    work_dir: str = ".pipeline"


class SyntheticConfig(Section):
    customers: int = Field(1000, ge=50)
    seed: int = 7


class DataConfig(Section):
    spec: str = "adventureworks"
    url: str = "sqlite:///{work_dir}/data/synthetic_adventureworks.db"
    generate_if_missing: bool = True
    synthetic: SyntheticConfig = SyntheticConfig()


LabelDefinition = Literal["within_horizon", "active_after_horizon"]


class LabelConfig(Section):
    horizon_days: int = Field(180, ge=1)
    definition: LabelDefinition = "within_horizon"


class FeatureConfig(Section):
    max_depth: int = Field(2, ge=1, le=4)
    agg_primitives: list[str] = ["count", "sum", "mean", "max", "num_unique", "time_since_first"]
    trans_primitives: list[str] = ["month", "weekday"]
    max_features: int = Field(150, ge=1)
    approximate: str | None = None
    n_jobs: int = 1
    engine: Literal["columnar", "featuretools"] = "columnar"
    drop_snapshot: bool = False
    windows: list[Annotated[str, Field(pattern=WINDOW_PATTERN)]] = ["30d", "90d", "365d"]  # [] = no window features
    recency: bool = True  # time since last event, gaps, previous values, streaks (pipeline.feature_windows)
    partitions: int = Field(1, ge=1)  # parts by customer-key hash, computed apart (pipeline.feature_partitions)
    part_deployment: str = "feature-part/feature-part"


class SplitConfig(Section):
    method: Literal["time", "random"] = "time"
    test_size: float = Field(0.2, gt=0, lt=1)
    valid_size: float = Field(0.2, gt=0, lt=1)
    purge: bool = True
    seed: int = 42
    min_rows: int = Field(50, ge=10)


class ModelConfig(Section):
    params: dict[str, Any] = {}
    num_boost_round: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    threshold: float = Field(0.5, gt=0, lt=1)
    threshold_objective: Literal["f1", "precision_at_recall", "cost", "fixed"] = "f1"
    min_recall: float = Field(0.5, gt=0, le=1)
    cost_ratio: float = Field(1.0, gt=0)
    calibration: Literal["platt", "isotonic", "none"] = "platt"
    baseline_value_column: str | None = None
    num_threads: int = Field(0, ge=0, description="0: cores / workers on this host")


class SearchParam(Section):
    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"search param {self.name!r}: categorical needs `choices`")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"search param {self.name!r}: needs low < high")
        if self.log and self.step is not None:
            raise ValueError(f"search param {self.name!r}: `log` and `step` cannot be combined")
        return self


class TuningConfig(Section):
    n_trials: int = Field(20, ge=0)
    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = "roc_auc"
    seed: int = 42
    n_startup_trials: int = Field(5, ge=0)
    pruner_warmup_steps: int = Field(20, ge=0)
    storage: str = "journal:///{work_dir}/optuna/journal.log"
    study_name: str = "churn-{spec}"
    dispatch: Literal["local", "prefect"] = "local"
    n_shards: int = Field(1, ge=1)
    shard_deployment: str = "tuning-shard/tuning-shard"
    heartbeat_interval: int = Field(10, ge=1)
    timeout_minutes: float = Field(120, gt=0)
    storage_outage_seconds: float = Field(120, ge=0, description="how long a shard waits for an unreachable Optuna storage")
    search_space: list[SearchParam] = []


class TrackingConfig(Section):
    tracking_uri: str = "sqlite:///{work_dir}/mlflow/mlflow.db"
    artifact_location: str | None = "{work_dir}/mlflow/artifacts"
    experiment: str = "churn-{spec}"
    registered_model: str = "churn-{spec}"
    champion_alias: str = "champion"
    promotion_margin: float = Field(0.002, ge=0)
    promote_partial: bool = False


class StorageConfig(Section):
    uri: str = "{work_dir}/artifacts"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_outage_seconds: float = Field(90, ge=0, description="how long reads and writes wait for an unreachable S3")
    s3_retry_mode: Literal["standard", "adaptive"] = "standard"


class CacheConfig(Section):
    """Step outputs reused while their inputs are unchanged (`pipeline.cache`)."""

    enabled: bool = True


class PrefectConfig(Section):
    work_pool: str = "churn-pool"
    flow_timeout_minutes: float = 180


class TrainingConfig(Section):
    """When the `training` deployment retrains (its schedule; what a run does is in the other sections)."""

    cron: str = "0 3 * * 1"  # the training deployment's schedule (UTC), as prefect.yaml sets it


class AlertsConfig(Section):
    """Where failed runs and scoring drift are reported (`pipeline.alerts`)."""

    webhook_url: str | None = None  # POST target of the alerts; ALERT_WEBHOOK_URL when null; none: no alerts
    drift_psi: float = Field(0.25, ge=0)  # a scoring run whose largest feature PSI exceeds this raises a drift alert


class ScoringConfig(Section):
    """Who is scored and how the scores are banded and stored (`python -m pipeline score`)."""

    as_of: str = "latest"  # "latest" (the source's latest order date), "now" (today, UTC) or YYYY-MM-DD
    active_days: int = Field(365, ge=1)
    bands: dict[str, float] = {"medium": 0.5, "low": 0.0}
    high_band: str = "high"
    psi_bins: int = Field(10, ge=2)
    table_url: str = "sqlite:///{work_dir}/scores.db"
    table: str = "scores"
    cron: str = "0 6 * * *"  # the scoring deployment's schedule (UTC), as prefect.yaml sets it

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of_is_a_date(cls, value: Any) -> str:
        text = str(value)  # YAML and --set read 2014-06-30 as a date
        try:
            return text if text in ("latest", "now") else date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError("must be 'latest', 'now' or a date YYYY-MM-DD") from None

    @field_validator("bands")
    @classmethod
    def _bands_are_quantiles(cls, bands: dict[str, float]) -> dict[str, float]:
        if not bands or min(bands.values()) != 0.0 or not all(0.0 <= q < 1.0 for q in bands.values()):
            raise ValueError("bands map a name to the lower quantile of the scores below the threshold, in [0, 1), one of them 0")
        return bands


class Config(BaseSettings):
    """The whole configuration. A pydantic-settings model so that its fields are the schema the
    environment is read against; it is built by `load_config`, never from `Config()` directly."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_parse_none_str="")

    paths: PathsConfig = PathsConfig()
    data: DataConfig = DataConfig()
    labels: LabelConfig = LabelConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    tuning: TuningConfig = TuningConfig()
    tracking: TrackingConfig = TrackingConfig()
    storage: StorageConfig = StorageConfig()
    cache: CacheConfig = CacheConfig()
    prefect: PrefectConfig = PrefectConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("tuning")
    @classmethod
    def _search_space_names_unique(cls, tuning: TuningConfig) -> TuningConfig:
        names = [p.name for p in tuning.search_space]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"search_space names must be unique, repeated: {dupes}")
        return tuning

    @property
    def work_dir(self) -> Path:
        return Path(self.paths.work_dir)

    def resolved(self) -> Config:
        """Substitute `{work_dir}` and `{spec}` in string values; `{work_dir}` becomes absolute."""
        spec_name = Path(self.data.spec).stem if self.data.spec.endswith((".yaml", ".yml")) else self.data.spec
        subs = {"work_dir": str(Path(self.paths.work_dir).resolve()), "spec": spec_name}
        return Config.model_validate(_substitute(self.model_dump(), subs))


def _substitute(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, new in subs.items():
            value = value.replace("{" + key + "}", new)
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, subs) for v in value]
    return value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_name(path: tuple[str, ...] | list[str]) -> str:
    """The environment variable of a config key: ("tuning", "n_trials") -> PIPELINE__TUNING__N_TRIALS."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


class _EnvironmentLayer(EnvSettingsSource):
    """`PIPELINE__SECTION__KEY` variables of a given mapping, lists and mappings written as YAML (JSON is YAML)."""

    def __init__(self, environ: dict[str, str]) -> None:
        self._environ = environ
        super().__init__(Config)

    def _load_env_vars(self) -> dict[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        return yaml.safe_load(value)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """`PIPELINE__TUNING__N_TRIALS=50` -> {"tuning": {"n_trials": "50"}}; a variable naming no section is an error
    (pydantic-settings would pass over it, and a typo would silently change nothing)."""
    environ = dict(os.environ if environ is None else environ)
    sections = {name[len(ENV_PREFIX) :].split("__")[0].lower() for name in environ if name.upper().startswith(ENV_PREFIX)}
    unknown = sorted(sections - set(Config.model_fields))
    if unknown:
        raise ConfigError(
            f"invalid configuration (env): no config section {unknown} ({', '.join(Config.model_fields)}); fix the PIPELINE__ variable's name"
        )
    try:
        return _EnvironmentLayer(environ)()
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"invalid configuration (env): {exc}") from None


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`--set tuning.n_trials=5` -> {"tuning": {"n_trials": 5}} (values parsed as YAML, like the environment's)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects section.key=value, got {pair!r}")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _explain(exc: ValidationError, source: str) -> str:
    """One line per problem, showing the offending value masked: a URL's password or a secret-named key's value."""
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        key = next((str(p) for p in reversed(err["loc"]) if isinstance(p, str)), "")
        value = err.get("input")
        shown = mask_value(key, value.model_dump() if isinstance(value, BaseModel) else value)
        hint = "remove it or fix its spelling" if err["type"] == "extra_forbidden" else err["msg"]
        env = env_name([p for p in err["loc"] if not isinstance(p, int)])
        lines.append(mask_url(f"  - {where}: {hint} (got {shown!r}; YAML key `{where}` or env {env})"))
    return "\n".join(lines)


def config_layers(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The layers of the configuration by name, lowest precedence first (empty ones left out)."""
    layers = {
        "default": read_config_file(DEFAULTS),
        f"file {path}": read_config_file(Path(path)) if path is not None else {},
        "env": env_overrides(environ),
        "--set": overrides or {},
    }
    return {name: layer for name, layer in layers.items() if layer or name == "default"}


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Defaults < YAML file < environment < explicit overrides, validated and resolved."""
    layers = config_layers(path, overrides, environ)
    data: dict[str, Any] = {}
    for layer in layers.values():
        data = deep_merge(data, layer)
    try:
        return Config.model_validate(data).resolved()
    except ValidationError as exc:
        raise ConfigError(_explain(exc, " < ".join(layers))) from None
