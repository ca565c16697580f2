"""Dataset specs: a relational dataset described as data (YAML + .sql), never as Python.

A spec names the tables (one SQL query each, in files beside the YAML), their
primary keys, time indexes, woodwork logical types, the relationships between
them, the target entity, the columns to drop and the columns that are current
snapshots rather than history (`snapshot`). Everything downstream (labels,
featuretools entity set, validation) is driven by it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

PACKAGED = Path(__file__).with_name("datasets")


class SpecError(ValueError):
    """The dataset spec is invalid; the message names the spec file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Entity(_Strict):
    query: str
    index: str
    time_index: str | None = None
    logical_types: dict[str, str] = {}
    drop: list[str] = []
    # Columns holding the source's current values, not values as of each row's time (e.g. a customer's
    # email preference today): features built on them may leak the future. Every run warns about them;
    # `features.drop_snapshot: true` drops them right after the extract.
    snapshot: list[str] = []
    # Allowed values of categorical columns, where the dataset defines them (codes, flags): other
    # values are reported with example keys before labels are computed (an error if strict_categories)
    categories: dict[str, list[str | int]] = {}


class Relationship(_Strict):
    parent: str
    parent_key: str
    child: str
    child_key: str


class Target(_Strict):
    entity: str
    customer_key: str
    time_index: str


class DatasetSpec(_Strict):
    name: str
    description: str = ""
    target: Target
    entities: dict[str, Entity]
    relationships: list[Relationship] = []
    strict_categories: bool = False  # a value outside `categories` stops the run instead of warning
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        names = set(self.entities)
        if self.target.entity not in names:
            raise ValueError(f"target.entity {self.target.entity!r} is not one of the entities {sorted(names)}")
        target = self.entities[self.target.entity]
        if target.time_index != self.target.time_index:
            raise ValueError(
                f"target.time_index {self.target.time_index!r} must be the time_index of entity "
                f"{self.target.entity!r} ({target.time_index!r})"
            )
        for rel in self.relationships:
            for side in (rel.parent, rel.child):
                if side not in names:
                    raise ValueError(f"relationship {rel.parent}->{rel.child}: unknown entity {side!r}")
            if self.entities[rel.parent].index != rel.parent_key:
                raise ValueError(
                    f"relationship {rel.parent}->{rel.child}: parent_key {rel.parent_key!r} must be the "
                    f"index of {rel.parent!r} ({self.entities[rel.parent].index!r})"
                )
        return self

    @model_validator(mode="after")
    def _snapshot_columns_can_be_dropped(self) -> DatasetSpec:
        """Keys and time indexes hold the data together: they cannot be marked snapshot (and dropped)."""
        keys = {(e, k) for rel in self.relationships for e, k in ((rel.parent, rel.parent_key), (rel.child, rel.child_key))}
        keys.add((self.target.entity, self.target.customer_key))
        for name, ent in self.entities.items():
            structural = {ent.index, ent.time_index} | {k for e, k in keys if e == name}
            bad = sorted(set(ent.snapshot) & structural)
            if bad:
                raise ValueError(
                    f"entity {name!r}: snapshot column(s) {bad} are keys or the time index, which the pipeline needs; "
                    "remove them from `snapshot`"
                )
        return self

    def query_path(self, entity: str) -> Path:
        """The entity's SQL file, refused unless it is a `.sql` file inside the spec's folder.

        Symlinks are resolved first, so neither `../`, an absolute path nor a link can make the
        extract read (and send to the database, and echo in errors) a file from elsewhere.
        """
        query = self.entities[entity].query
        folder = self.base_dir.resolve()
        path = (folder / query).resolve()
        if Path(query).is_absolute() or not path.is_relative_to(folder) or path.suffix != ".sql":
            raise SpecError(
                f"spec {self.name!r}, entity {entity!r}: query {query!r} must be a relative path to a .sql file "
                f"inside the spec folder {folder}"
            )
        if not path.is_file():
            raise SpecError(f"spec {self.name!r}: query file {path} for entity {entity!r} does not exist")
        return path

    def sql(self, entity: str) -> str:
        return self.query_path(entity).read_text()


def spec_path(name_or_path: str) -> Path:
    """A packaged spec by name (`adventureworks`) or any spec YAML by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        return candidate
    packaged = PACKAGED / name_or_path / "spec.yaml"
    if not packaged.exists():
        known = sorted(p.parent.name for p in PACKAGED.glob("*/spec.yaml"))
        raise SpecError(f"no packaged dataset spec {name_or_path!r}; packaged: {known}, or give a path to a spec .yaml")
    return packaged


def load_spec(name_or_path: str) -> DatasetSpec:
    path = spec_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"dataset spec {path} does not exist") from None
    try:
        spec = DatasetSpec.model_validate({**raw, "base_dir": path.parent})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"invalid dataset spec {path}: {problems}") from None
    for entity in spec.entities:
        spec.query_path(entity)  # every query file must exist, inside the spec folder, before any work starts
    return spec
