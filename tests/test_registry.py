"""Tests of ``conformance.backends.registry``: entry-point loading, duplicate names, import paths, availability.

Entry points are faked as in pluggy's ``testing/test_pluginmanager.py::test_load_setuptools_instantiation``:
``conformance.backends.registry.group_entry_points`` is monkeypatched to return ``importlib.metadata.EntryPoint``
objects whose
values point at helper classes in this module (or at a module written to ``tmp_path``). Entry points that need
a distribution name come from real ``*.dist-info`` folders written to ``tmp_path``.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.backends import registry as reg_mod
from conformance.backends.backend import Capabilities, Grads
from conformance.backends.registry import GROUP, Registry, add_spec, build_registry, load_entry_points, load_import_path
from conformance.errors import RegistryError

HERE = __name__  # the module name entry-point values use to reach the helpers below


# -- helper backends ----------------------------------------------------------------------------

class FakeConv:
    """A minimal valid backend."""

    name = "fake"
    capabilities = Capabilities()
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1

    def forward(self, problem: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return np.zeros(problem.output_shape, dtype=problem.dtype)

    def backward(self, problem: Any, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        return Grads(np.zeros_like(x), np.zeros_like(w), None)


class OtherFakeConv(FakeConv):
    """A different class that claims the same name."""


class SecondConv(FakeConv):
    name = "second"


class NoGpuConv(FakeConv):
    name = "no-gpu"

    def available(self) -> str | None:
        return "no CUDA device here"


class BrokenProbeConv(FakeConv):
    name = "broken-probe"

    def available(self) -> str | None:
        raise OSError("driver exploded")


class ReadyConv(FakeConv):
    name = "ready"

    def available(self) -> bool:
        return True


class FailingInitConv(FakeConv):
    name = "failing-init"

    def __init__(self) -> None:
        raise RuntimeError("needs a licence key")


FAKE_INSTANCE = SecondConv()


def ep(name: str, value: str, group: str = GROUP) -> md.EntryPoint:
    return md.EntryPoint(name, value, group)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[Any]) -> None:
    monkeypatch.setattr(reg_mod, "group_entry_points", lambda group: [e for e in eps if e.group == group])


def dist_entry_points(tmp_path: Path, dist_name: str, lines: list[str]) -> list[md.EntryPoint]:
    """Entry points of a real (installed-looking) distribution ``dist_name``, written to ``tmp_path``."""
    info = tmp_path / f"{dist_name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "\n".join(lines) + "\n")
    eps = list(md.Distribution.at(info).entry_points)
    assert all(e.dist is not None and e.dist.name == dist_name for e in eps)
    return eps


# -- entry points -------------------------------------------------------------------------------

def test_class_entry_points_are_instantiated(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("fake", f"{HERE}:FakeConv"), ep("second", f"{HERE}:SecondConv")])
    before = FakeConv.instances
    reg = Registry()
    assert load_entry_points(reg) == 2
    assert reg.names() == ["fake", "second"]
    entry = reg.get("fake")
    assert type(entry.backend) is FakeConv and FakeConv.instances > before
    assert entry.spec == f"{HERE}:FakeConv"
    assert entry.source == f"entry point {GROUP}:fake = {HERE}:FakeConv (?)"
    assert entry.runnable and entry.unavailable is None


def test_instance_entry_point_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("second", f"{HERE}:FAKE_INSTANCE")])
    reg = Registry()
    load_entry_points(reg)
    assert reg.get("second").backend is FAKE_INSTANCE


def test_other_groups_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("fake", f"{HERE}:FakeConv", group="somebody.else")])
    reg = Registry()
    assert load_entry_points(reg) == 0 and len(reg) == 0


def test_duplicate_name_from_another_class_names_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("fake", f"{HERE}:FakeConv"), ep("fake-too", f"{HERE}:OtherFakeConv")])
    with pytest.raises(RegistryError) as info:
        load_entry_points(Registry())
    assert str(info.value) == (f"duplicate implementation name 'fake': entry point {GROUP}:fake = {HERE}:FakeConv (?)"
                               f" and entry point {GROUP}:fake-too = {HERE}:OtherFakeConv (?)")


def test_same_class_twice_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("fake", f"{HERE}:FakeConv"), ep("fake-alias", f"{HERE}:FakeConv")])
    reg = Registry()
    load_entry_points(reg)
    assert reg.names() == ["fake"]
    assert reg.get("fake").source.startswith(f"entry point {GROUP}:fake = ")  # the first one wins


def test_count_of_same_class_twice_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("fake", f"{HERE}:FakeConv"), ep("fake-alias", f"{HERE}:FakeConv")])
    reg = Registry()
    assert load_entry_points(reg) == len(reg) == 1


def test_names_already_registered_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry()
    reg.register(FakeConv, source="first", spec="x")
    # an entry point of a registered name is not even loaded: a broken value behind it does no harm
    fake_entry_points(monkeypatch, [ep("fake", "no_such_module_anywhere:Nope"), ep("second", f"{HERE}:SecondConv")])
    assert load_entry_points(reg) == 1
    assert reg.get("fake").source == "first"


def test_entry_point_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("ghost", "no_such_module_anywhere:Ghost")])
    with pytest.raises(RegistryError, match=re.escape(
            f"entry point {GROUP}:ghost = no_such_module_anywhere:Ghost (?) failed to import: ModuleNotFoundError")):
        load_entry_points(Registry())


def test_entry_point_whose_constructor_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("failing-init", f"{HERE}:FailingInitConv")])
    with pytest.raises(RegistryError, match=re.escape(
            "FailingInitConv() raised RuntimeError: needs a licence key")):
        load_entry_points(Registry())


def test_entry_point_from_a_tmp_path_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "thirdparty_conv_mod.py").write_text(textwrap.dedent("""
        from conformance import Capabilities

        class ThirdParty:
            name = "third-party"
            capabilities = Capabilities(dtypes=("float64",), groups=False)
            version = "2.5"
            def forward(self, problem, x, w, b): raise NotImplementedError
            def backward(self, problem, x, w, dy): raise NotImplementedError
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_conv_mod", raising=False)
    fake_entry_points(monkeypatch, [ep("third-party", "thirdparty_conv_mod:ThirdParty")])
    reg = Registry()
    load_entry_points(reg)
    entry = reg.get("third-party")
    assert entry.version == "2.5" and entry.backend.capabilities.groups is False


# -- the off switch -----------------------------------------------------------------------------

@pytest.fixture
def two_distributions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = dist_entry_points(tmp_path, "conv-conformance", [f"fake = {HERE}:FakeConv"])
    other = dist_entry_points(tmp_path, "thirdparty-conv", [f"second = {HERE}:SecondConv"])
    fake_entry_points(monkeypatch, own + other)


@pytest.mark.usefixtures("two_distributions")
def test_no_plugins_skips_other_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONV_CONFORMANCE_NO_PLUGINS", "1")
    reg = Registry()
    assert load_entry_points(reg) == 1
    assert reg.names() == ["fake"]
    assert reg.get("fake").source == f"entry point {GROUP}:fake = {HERE}:FakeConv (conv-conformance)"


@pytest.mark.usefixtures("two_distributions")
@pytest.mark.parametrize("value", [None, "", "0"])
def test_plugins_load_unless_switched_off(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CONV_CONFORMANCE_NO_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("CONV_CONFORMANCE_NO_PLUGINS", value)
    reg = Registry()
    assert load_entry_points(reg) == 2
    assert reg.names() == ["fake", "second"]
    assert reg.get("second").source.endswith("(thirdparty-conv)")


# -- import paths -------------------------------------------------------------------------------

BACKEND_FILE = """
from conformance import Capabilities

class FileConv:
    name = "file-conv"
    capabilities = Capabilities(dtypes=("float32",))
    def forward(self, problem, x, w, b): return None
    def backward(self, problem, x, w, dy): return None

class NoName:
    capabilities = Capabilities()
    def forward(self, problem, x, w, b): return None
    def backward(self, problem, x, w, dy): return None

class NoCapabilities:
    name = "no-caps"
    def forward(self, problem, x, w, b): return None
    def backward(self, problem, x, w, dy): return None

class DictCapabilities(NoCapabilities):
    name = "dict-caps"
    capabilities = {"dtypes": ("float32",)}

class NoForward:
    name = "no-forward"
    capabilities = Capabilities()
    def backward(self, problem, x, w, dy): return None

class NoBackward:
    name = "no-backward"
    capabilities = Capabilities()
    forward = None
    backward = "not callable"

not_a_backend = 42
"""


@pytest.fixture
def backend_file(tmp_path: Path) -> Path:
    path = tmp_path / "outside_repo" / "my_backend.py"
    path.parent.mkdir()
    path.write_text(BACKEND_FILE)
    assert not path.is_relative_to(Path(__file__).resolve().parents[1])
    return path


def test_import_path_of_a_module() -> None:
    assert load_import_path(f"{HERE}:FakeConv") is FakeConv
    assert load_import_path("conformance.impls.naive:NaiveLoops").__name__ == "NaiveLoops"
    assert load_import_path(f"{HERE}:FakeConv.capabilities") is FakeConv.capabilities  # dotted attributes


def test_import_path_of_a_file(backend_file: Path) -> None:
    cls = load_import_path(f"{backend_file}:FileConv")
    assert cls.__name__ == "FileConv" and cls().name == "file-conv"
    assert load_import_path(f"{backend_file}:FileConv") is cls  # the file is imported once


def test_add_spec_registers_a_file_backend(backend_file: Path) -> None:
    reg = Registry()
    entry = add_spec(reg, f"{backend_file}:FileConv")
    assert entry.name == "file-conv" and entry.spec == f"{backend_file}:FileConv"
    assert entry.source == f"--impl {backend_file}:FileConv"
    assert add_spec(reg, "file-conv") is entry  # a bare name looks up what is registered
    with pytest.raises(RegistryError, match=re.escape("no implementation named 'nope'; registered: file-conv")):
        add_spec(reg, "nope")


def test_relative_file_path_is_resolved(backend_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(backend_file.parent.parent)
    entry = add_spec(Registry(), "outside_repo/my_backend.py:FileConv")
    assert entry.spec == f"{backend_file}:FileConv"  # absolute, so a fresh process can reload it


@pytest.mark.parametrize("spec, message", [
    pytest.param("nocolon", "--impl 'nocolon' must be in the form pkg.module:Name or path/to/file.py:Name",
                 id="no colon"),
    pytest.param("pkg.mod:", "--impl 'pkg.mod:' must be in the form pkg.module:Name", id="no attribute"),
    pytest.param(":Name", "--impl ':Name' must be in the form pkg.module:Name", id="no module"),
    pytest.param("missing.module:X",
                 "--impl 'missing.module:X': cannot import module 'missing.module': ModuleNotFoundError",
                 id="missing module"),
    pytest.param("os:NoSuchAttr", "--impl 'os:NoSuchAttr': module 'os' has no attribute 'NoSuchAttr'",
                 id="missing attribute"),
])
def test_bad_import_paths(spec: str, message: str) -> None:
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_import_path(spec)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    with pytest.raises(RegistryError, match=re.escape(f"--impl '{missing}:X': no file {missing}")):
        load_import_path(f"{missing}:X")


def test_file_that_raises_on_import(tmp_path: Path) -> None:
    path = tmp_path / "explodes.py"
    path.write_text("import math\nraise RuntimeError('cannot initialise the device')\n")
    with pytest.raises(RegistryError, match=re.escape(
            f"--impl '{path}:Conv': importing {path} raised RuntimeError: cannot initialise the device")):
        load_import_path(f"{path}:Conv")
    assert not [m for m in sys.modules if m.startswith("_conv_conformance_impl_explodes_")]  # no half module kept


@pytest.mark.parametrize("attr, message", [
    pytest.param("NoName", "has no name (a non-empty str attribute `name`)", id="no name"),
    pytest.param("NoCapabilities", "backend 'no-caps' has no `capabilities` attribute (a conformance.Capabilities)",
                 id="no capabilities"),
    pytest.param("DictCapabilities", "backend 'dict-caps' has capabilities={'dtypes': ('float32',)}, but it must be "
                                     "a conformance.Capabilities", id="dict capabilities"),
    pytest.param("NoForward", "backend 'no-forward' has no callable forward()", id="no forward"),
    pytest.param("NoBackward", "backend 'no-backward' has no callable forward()", id="forward None"),
    pytest.param("not_a_backend", "backend 42 has no name", id="an int"),
])
def test_objects_lacking_the_protocol(backend_file: Path, attr: str, message: str) -> None:
    spec = f"{backend_file}:{attr}"
    with pytest.raises(RegistryError, match=re.escape(f"--impl {spec}: ") + ".*" + re.escape(message)):
        add_spec(Registry(), spec)


def test_object_lacking_backward() -> None:
    class OnlyForward:
        name = "only-forward"
        capabilities = Capabilities()

        def forward(self, *args: Any) -> None:
            return None

    with pytest.raises(RegistryError, match=re.escape("somewhere: backend 'only-forward' has no callable backward()")):
        Registry().register(OnlyForward, source="somewhere", spec="x")


# -- availability -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, reason", [
    pytest.param(NoGpuConv, "no CUDA device here", id="reason"),
    pytest.param(BrokenProbeConv, "available() raised OSError: driver exploded", id="probe raises"),
])
def test_unavailable_backend_is_registered_not_runnable(cls: type, reason: str) -> None:
    entry = Registry().register(cls, source="test", spec="x")
    assert entry.unavailable == reason
    assert entry.runnable is False


def test_available_true_is_runnable() -> None:
    entry = Registry().register(ReadyConv, source="test", spec="x")
    assert entry.unavailable is None and entry.runnable


def test_unavailable_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("no-gpu", f"{HERE}:NoGpuConv")])
    reg = Registry()
    assert load_entry_points(reg) == 1
    assert reg.get("no-gpu").unavailable == "no CUDA device here"


# -- the real installed entry points ------------------------------------------------------------

BUILT_INS = {"naive": "conformance.impls.naive:NaiveLoops",
             "scipy": "conformance.impls.scipy_correlate:ScipyCorrelate",
             "im2col": "conformance.impls.im2col:Im2col", "fft": "conformance.impls.fft:FFTConv",
             "torch-cpu": "conformance.impls.torch_cpu:TorchCPU",
             "torch-cuda-strict": "conformance.impls.torch_cuda:TorchCudaStrict",
             "torch-cuda-default": "conformance.impls.torch_cuda:TorchCudaDefault",
             "torch-native": "conformance.impls.torch_native:TorchNative",
             "torch-compile": "conformance.impls.torch_compile:TorchCompile",
             "jax": "conformance.impls.jax_lax:JaxLax", "tensorflow": "conformance.impls.tensorflow_conv:TensorFlowCPU",
             "onnxruntime": "conformance.impls.onnxruntime_conv:OnnxRuntimeConv"}


def test_installed_entry_points_are_the_built_ins() -> None:
    eps = {e.name: e for e in reg_mod.group_entry_points(GROUP)}
    for name, value in BUILT_INS.items():
        assert name in eps, f"entry point {name} is not installed (pip install -e .?)"
        assert eps[name].value == value
        assert eps[name].dist is not None and eps[name].dist.name == "conv-conformance"


def test_build_registry_loads_the_built_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONV_CONFORMANCE_NO_PLUGINS", "1")
    reg = build_registry()
    assert set(BUILT_INS) <= set(reg.names())
    for name in ("naive", "scipy", "im2col", "fft"):
        assert reg.get(name).runnable, reg.get(name).unavailable
    assert reg.get("fft").backend.capabilities.error_model == "normwise"


def test_build_registry_adds_specs_after_entry_points(backend_file: Path) -> None:
    reg = build_registry([f"{backend_file}:FileConv"], entry_points=False)
    assert reg.names() == ["file-conv"]
    with pytest.raises(RegistryError, match=re.escape("no implementation named 'naive'; registered: file-conv")):
        build_registry([f"{backend_file}:FileConv", "naive"], entry_points=False)
    both = build_registry([f"{backend_file}:FileConv", "naive"])  # a bare name refers to an entry point
    assert both.names()[-1] == "file-conv" and "naive" in both.names()


def test_empty_registry_lookup() -> None:
    with pytest.raises(RegistryError, match=re.escape("no implementation named 'naive'; registered: none")):
        Registry().get("naive")


def test_torch_cuda_probe_needs_no_torch_where_no_nvidia_driver_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from impls import torch_cuda

    monkeypatch.setattr(torch_cuda.TorchCPU, "available", lambda self: None)  # torch "installed"
    monkeypatch.setitem(sys.modules, "torch", None)  # but importing it fails: the probe must not need it
    monkeypatch.setattr(torch_cuda.sys, "platform", "linux")
    monkeypatch.setattr(torch_cuda.os.path, "exists", lambda path: False)
    entry = Registry().register(torch_cuda.TorchCudaStrict, source="test", spec="x")
    assert entry.unavailable is not None and entry.unavailable.startswith("no NVIDIA driver loaded")
    # with a driver present the probe asks torch itself (here: the import fails, and says so)
    monkeypatch.setattr(torch_cuda.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    entry = Registry().register(torch_cuda.TorchCudaDefault, source="test", spec="x")
    assert entry.unavailable is not None and "import of torch halted" in entry.unavailable


def test_availability_is_asked_on_first_use_only() -> None:
    calls = []

    class Probed(ReadyConv):
        name = "probed"

        def available(self) -> None:
            calls.append(1)
            return None

    entry = Registry().register(Probed, source="test", spec="x")
    assert calls == []  # registering (building the parametrization) probes nothing
    assert entry.runnable and entry.runnable
    assert calls == [1]


def test_torch_backends_report_the_installed_version_whether_torch_is_imported_or_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One answer in every process of a run: the pytest process (torch not imported) and a backend's worker
    (imported) gave 2.11.0 and 2.11.0+cu130 for one torch on a GPU host."""
    from types import SimpleNamespace

    from conformance.impls.torch_cpu import TorchCPU

    from conformance.results.records import environment

    try:
        installed = md.version("torch")
    except md.PackageNotFoundError:
        installed = "n/a"
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert TorchCPU().version == installed
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(__version__="9.9.9+local"))  # an imported torch
    assert TorchCPU().version == installed
    assert environment()["torch"] == (installed if installed != "n/a" else "")
