"""Load the service catalog from our YAML and Backstage files, then check every reference across both.

Each file is read into drafts (`CatalogSource`); then, with everything declared in view, owners and
verifiers must be teams, systems must be Systems, dependencies must exist and names must be unique.
Every problem is collected and raised as one `ConfigErrors`, each at its file and line.
"""

from __future__ import annotations

import difflib
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from recoverlink.config.backstage import read_backstage_file
from recoverlink.config.catalog_file import read_catalog_file
from recoverlink.config.catalog_refs import (
    GROUP,
    CatalogSource,
    CatalogValueError,
    Declaration,
    EntityDraft,
    Reference,
    normalise_ref,
    ref_kind,
    team_name,
)
from recoverlink.config.model import CatalogConfig
from recoverlink.domain.catalog import DEFAULT_NAMESPACE, Catalog, CatalogEntry, EntityKind, Team
from recoverlink.domain.errors import ConfigError, ConfigErrors

SYSTEM_HINT = "a system is a Backstage System, or a service with kind: system"
TEAM_HINT = "recoverlink routes to teams: a Backstage Group, or a team of a catalog file"


def load_catalog(catalog_config: CatalogConfig, base_dir: Path, config_name: str = "config") -> Catalog:
    """Read every catalog file the config names (globs relative to `base_dir`) into one checked Catalog.

    `config_name` names the config file in errors about its own keys (a glob that matches nothing, an
    unknown fallback owner). Raises ConfigErrors listing every problem found.
    """
    errors: list[ConfigError] = []
    files = expand(catalog_config.files, base_dir, "catalog.files", config_name, errors)
    backstage = expand(catalog_config.backstage, base_dir, "catalog.backstage", config_name, errors)
    annotations = catalog_config.backstage_annotations
    sources = [read_catalog_file(path) for path in files]
    sources += [read_backstage_file(path, annotations) for path in backstage]
    for source in sources:
        errors.extend(source.errors)
    resolver = _Resolver(sources)
    fallback = resolver.fallback_owner(catalog_config.fallback_owner, config_name)
    errors.extend(resolver.errors)
    if errors:
        raise ConfigErrors(errors)
    return Catalog(entries=resolver.entries, teams=resolver.teams_by_name(), fallback_owner=fallback)


def expand(
    patterns: Sequence[str], base_dir: Path, key: str, config_name: str, errors: list[ConfigError]
) -> list[Path]:
    """The files the globs match, in order, each once; a pattern that matches no file is an error."""
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
        matches = (Path(os.path.normpath(match)) for match in glob.glob(full, recursive=True))
        found = sorted(path for path in matches if path.is_file())
        if not found:
            hint = f"patterns are relative to {base_dir}"
            errors.append(ConfigError(config_name, f'{key}: "{pattern}" matches no file', hint=hint))
        paths.extend(path for path in found if path not in paths)
    return paths


class _Resolver:
    """Everything declared in every file, and the checks that need all of it in view."""

    def __init__(self, sources: Sequence[CatalogSource]) -> None:
        self.errors: list[ConfigError] = []
        self.declared: dict[str, Declaration] = {}
        for declaration in (d for source in sources for d in source.declared):
            self._declare(declaration)
        drafts = [draft for source in sources for draft in source.teams]
        self.teams: dict[str, Team] = {}
        for draft in drafts:
            self.teams.setdefault(draft.ref, draft.team)
        self.team_files = list(dict.fromkeys(d.team.source.path for d in drafts if d.team.source))
        self.entries: dict[str, CatalogEntry] = {}
        for entity in (e for source in sources for e in source.entities):
            if entity.entry.ref not in self.entries:
                self.entries[entity.entry.ref] = self._resolve(entity)

    def teams_by_name(self) -> dict[str, Team]:
        return {team.name: team for team in self.teams.values()}

    def fallback_owner(self, text: str | None, config_name: str) -> str | None:
        if text is None:
            return None
        key = "catalog.fallback_owner"
        try:
            ref = normalise_ref(text, GROUP)
        except CatalogValueError as exc:
            self.errors.append(ConfigError(config_name, f"{key}: {exc.message}", hint=exc.hint))
            return None
        team = self.teams.get(ref)
        if team is None:
            message = f'{key}: unknown team "{text}"'
            self.errors.append(ConfigError(config_name, message, hint=self._team_hint(ref)))
            return None
        return team.name

    def _declare(self, declaration: Declaration) -> None:
        first = self.declared.setdefault(declaration.ref, declaration)
        if first is declaration:
            return
        what = "team" if ref_kind(declaration.ref) == GROUP else "entity"
        shown = declaration.display if what == "team" else declaration.ref
        hint = f"first defined at {first.where}"
        if first.display != declaration.display:
            hint += "; names are unique per kind and namespace, ignoring case"
        where = declaration.where
        self.errors.append(ConfigError(where.path, f'duplicate {what} "{shown}"', where.line, hint=hint))

    def _resolve(self, draft: EntityDraft) -> CatalogEntry:
        return replace(
            draft.entry,
            owner=self._team(draft.owner),
            system=self._system(draft.system),
            depends_on=tuple(r.ref for r in draft.depends_on if self._exists(r)),
            verified_by=self._team(draft.verified_by),
        )

    def _team(self, reference: Reference | None) -> str | None:
        if reference is None:
            return None
        if ref_kind(reference.ref) != GROUP:
            self.errors.append(reference.error(f'"{reference.text}" is not a team', TEAM_HINT))
            return None
        team = self.teams.get(reference.ref)
        if team is None and reference.ref not in self.declared:  # a declared one failed validation
            message = f'unknown team "{reference.text}"'
            self.errors.append(reference.error(message, self._team_hint(reference.ref)))
        return team.name if team else None

    def _team_hint(self, ref: str) -> str:
        names = {team.name.lower(): team.name for team in self.teams.values()}
        where = (
            f"teams are defined in {', '.join(self.team_files)}"
            if self.team_files
            else "no team is defined; add one under `teams:` in a catalog file"
        )
        close = difflib.get_close_matches(team_name(ref), list(names), n=1)
        return f'did you mean "{names[close[0]]}"? {where}' if close else where

    def _system(self, reference: Reference | None) -> str | None:
        if reference is None:
            return None
        system = EntityKind.SYSTEM.value
        if ref_kind(reference.ref) != system:
            self.errors.append(reference.error(f'"{reference.text}" is not a system', SYSTEM_HINT))
        elif reference.ref not in self.declared:
            message = f'unknown system "{reference.text}"'
            self.errors.append(reference.error(message, self._system_hint(reference)))
        return reference.ref

    def _system_hint(self, reference: Reference) -> str | None:
        name = reference.ref.partition(":")[2]
        other = next((ref for ref in self.declared if ref.partition(":")[2] == name), None)
        if other is not None:
            return f'"{reference.text}" is a {ref_kind(other)}; {SYSTEM_HINT}'
        systems = [ref for ref in self.declared if ref_kind(ref) == EntityKind.SYSTEM.value]
        return _did_you_mean(reference.ref, systems, EntityKind.SYSTEM.value)

    def _exists(self, reference: Reference) -> bool:
        if reference.ref in self.declared:
            return True
        entities = [ref for ref in self.declared if ref_kind(ref) != GROUP]
        hints = [_did_you_mean(reference.ref, entities, None)]
        if ":" not in reference.text:
            hints.append(f"a name without a kind reads as {reference.ref}")
        hint = " ".join(h for h in hints if h) or None
        self.errors.append(reference.error(f'unknown entity "{reference.text}"', hint))
        return False


def _did_you_mean(ref: str, candidates: Iterable[str], default_kind: str | None) -> str | None:
    """The same name under another kind or namespace first, else the closest name."""
    wanted = ref.rpartition("/")[2]
    by_name = {candidate.rpartition("/")[2]: candidate for candidate in reversed(list(candidates))}
    close = [wanted] if wanted in by_name else difflib.get_close_matches(wanted, list(by_name), n=1)
    return f'did you mean "{_short(by_name[close[0]], default_kind)}"?' if close else None


def _short(ref: str, default_kind: str | None) -> str:
    """A ref as one would write it: without the default namespace, and without the field's default kind."""
    kind, _, rest = ref.partition(":")
    namespace, _, name = rest.partition("/")
    text = name if namespace == DEFAULT_NAMESPACE else rest
    return text if kind == default_kind else f"{kind}:{text}"
