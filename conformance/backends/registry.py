"""The plugin table: implementation name -> backend, filled through one door.

Built-ins and third-party backends alike enter through the entry-point group ``conv_conformance.impls``
(our own ``pyproject.toml`` declares the built-ins there, as pluggy's eggsample registers its own ``lib``), or
through an import path given on the command line: ``--impl pkg.module:Name`` or ``--impl path/to/file.py:Name``.
An entry point or import path may name a class (instantiated with no arguments) or an instance.
``CONV_CONFORMANCE_NO_PLUGINS=1`` skips entry points of other distributions (hypothesis' ``HYPOTHESIS_NO_PLUGINS``).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

from conformance.backends.backend import Capabilities, availability
from conformance.backends.machine import backend_facts
from conformance.errors import RegistryError

GROUP = "conv_conformance.impls"
OWN_DISTRIBUTION = "conv-conformance"
NO_PLUGINS_ENV = "CONV_CONFORMANCE_NO_PLUGINS"


@dataclass
class Entry:
    """A registered backend. Whether it can run here is asked of it (``available()``) on first use, not at
    registration: the probe of a torch backend imports torch (seconds), which a run that selects only numpy
    backends (``-k im2col``, ``gate --impl im2col``) never needs."""

    name: str
    backend: Any
    source: str        #: where it came from, for `conformance list` and the report
    spec: str          #: what reloads it in a fresh process: an import path

    @cached_property
    def unavailable(self) -> str | None:
        """Why it cannot run here, or None (the backend's ``available()`` probe, asked once)."""
        return availability(self.backend)

    @property
    def runnable(self) -> bool:
        return self.unavailable is None

    @property
    def version(self) -> str:
        v = getattr(self.backend, "version", "")
        return str(v() if callable(v) else v)


def left_out(e: Entry, selected: Sequence[str]) -> str | None:
    """Why an opt-in backend (its ``opt_in`` attribute says why it is one) is left out of a run whose ``--select``
    does not name it, or None: it runs."""
    why = getattr(e.backend, "opt_in", "")
    if not why or e.name in selected:
        return None
    return f"opt-in, runs only where a run names it (--select {e.name}): {why}"


def describe(e: Entry) -> dict[str, Any]:
    """A JSON-able description of an entry for `conformance list` and the report."""
    return {"name": e.name, "source": e.source, "spec": e.spec, "version": e.version, "unavailable": e.unavailable,
            "capabilities": e.backend.capabilities.to_dict(), "environment": backend_facts(e.backend)}


def validate_backend(obj: Any, origin: str) -> None:
    """Raise RegistryError naming what ``obj`` lacks of the backend protocol."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{origin}: backend {obj!r} has no name (a non-empty str attribute `name`)")
    if not hasattr(obj, "capabilities"):
        raise RegistryError(f"{origin}: backend {name!r} has no `capabilities` attribute (a conformance.Capabilities)")
    caps = obj.capabilities
    if not isinstance(caps, Capabilities):
        raise RegistryError(f"{origin}: backend {name!r} has capabilities={caps!r}, but it must be a "
                            "conformance.Capabilities")
    for method in ("forward", "backward"):
        if not callable(getattr(obj, method, None)):
            raise RegistryError(f"{origin}: backend {name!r} has no callable {method}()")


def instantiate(obj: Any, origin: str) -> Any:
    """The backend that ``obj`` names: ``obj()`` if it is a class (a constructor that raises is a RegistryError
    naming ``origin``, where it came from), else ``obj`` itself. The registry and an isolated backend's worker process
    (``conformance.backends.isolation``, which loads the backend again from its import path) both make backends this
    way."""
    if isinstance(obj, type):
        try:
            return obj()
        except Exception as exc:
            raise RegistryError(f"{origin}: {obj.__name__}() raised {type(exc).__name__}: {exc}") from exc
    return obj


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def register(self, obj: Any, *, source: str, spec: str) -> Entry:
        backend = instantiate(obj, source)
        validate_backend(backend, source)
        old = self._entries.get(backend.name)
        if old is not None:
            if type(old.backend) is type(backend):
                return old  # the same backend reached twice (entry point and --impl): one row
            raise RegistryError(f"duplicate implementation name {backend.name!r}: {old.source} and {source}")
        entry = Entry(backend.name, backend, source, spec)
        self._entries[backend.name] = entry
        return entry

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(f"no implementation named {name!r}; registered: {', '.join(self._entries) or 'none'}"
                                ) from None


def group_entry_points(group: str) -> list[md.EntryPoint]:
    """The installed entry points of ``group`` (tests replace it with their own list)."""
    return list(md.entry_points(group=group))


def load_entry_points(registry: Registry, group: str = GROUP) -> int:
    """Register every backend of ``group``; returns how many were added (pluggy's load_setuptools_entrypoints)."""
    skip_plugins = os.environ.get(NO_PLUGINS_ENV, "") not in ("", "0")
    count = 0
    for ep in group_entry_points(group):
        dist = ep.dist.name if ep.dist is not None else "?"
        if skip_plugins and dist != OWN_DISTRIBUTION:
            continue
        if ep.name in registry:
            continue
        source = f"entry point {group}:{ep.name} = {ep.value} ({dist})"
        try:
            obj = ep.load()
        except Exception as exc:
            raise RegistryError(f"{source} failed to import: {type(exc).__name__}: {exc}") from exc
        before = len(registry)
        registry.register(obj, source=source, spec=ep.value)
        count += len(registry) - before  # the same class under two names is one entry
    return count


def _import_module(module: str, spec: str) -> Any:
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = Path(module).resolve()
        if not path.is_file():
            raise RegistryError(f"--impl {spec!r}: no file {path}")
        modname = f"_conv_conformance_impl_{path.stem}_{abs(hash(str(path)))}"
        if modname in sys.modules:
            return sys.modules[modname]
        ispec = importlib.util.spec_from_file_location(modname, path)
        assert ispec is not None and ispec.loader is not None
        mod = importlib.util.module_from_spec(ispec)
        sys.modules[modname] = mod
        try:
            ispec.loader.exec_module(mod)
        except Exception as exc:
            del sys.modules[modname]
            raise RegistryError(f"--impl {spec!r}: importing {path} raised {type(exc).__name__}: {exc}") from exc
        return mod
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise RegistryError(f"--impl {spec!r}: cannot import module {module!r}: {type(exc).__name__}: {exc}") from exc


def load_import_path(spec: str) -> Any:
    """``pkg.module:Name`` or ``path/file.py:Name`` -> the object it names."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr or os.sep in attr or "/" in attr:  # the last two: C:\\dir\\file.py
        path = spec.removesuffix(":")
        if path.endswith(".py") or os.sep in path or "/" in path:
            raise RegistryError(f"--impl {spec!r} names a file but no class: use {path}:ClassName")
        raise RegistryError(f"--impl {spec!r} must be in the form pkg.module:Name or path/to/file.py:Name")
    obj = _import_module(module, spec)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RegistryError(f"--impl {spec!r}: module {module!r} has no attribute {attr!r}") from None
    return obj


def add_spec(registry: Registry, spec: str) -> Entry:
    """Add the backend named by ``spec`` (an import path), or return the registered one of that name."""
    if ":" not in spec:
        if spec not in registry and (spec.endswith(".py") or os.sep in spec or "/" in spec):
            load_import_path(spec)  # a file but no class: raises, saying so
        return registry.get(spec)
    if spec.rpartition(":")[0].endswith(".py"):
        spec = f"{Path(spec.rpartition(':')[0]).resolve()}:{spec.rpartition(':')[2]}"
    return registry.register(load_import_path(spec), source=f"--impl {spec}", spec=spec)


def build_registry(specs: list[str] | tuple[str, ...] = (), *, entry_points: bool = True) -> Registry:
    """Entry points first, then each ``--impl`` spec."""
    reg = Registry()
    if entry_points:
        load_entry_points(reg)
    for spec in specs:
        add_spec(reg, spec)
    return reg
