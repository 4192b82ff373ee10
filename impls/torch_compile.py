"""``torch.compile`` on the CPU (Inductor): ``torch-cpu``'s convolution (``F.conv1d/2d/3d``,
``F.conv_transpose1d/2d/3d``, padding modes through ``F.pad``, asymmetric transposed padding as a crop) compiled as
one graph, forward and backward: the backward is AOTAutograd's compiled backward graph, run by ``torch.autograd.grad``
on the compiled forward's output. A compiled backward that is wrong where eager is right is a known class of bug
(pytorch#100794).

Compilation: ``fullgraph=True`` (a graph break raises instead of running parts eagerly) and ``dynamic=False``: one
compiled graph per problem, per pass (the forward under ``no_grad``, the forward and backward with gradients) and per
operand layout (the suite hands non-contiguous arrays too; Dynamo guards on strides). Dynamic shapes are not used:
Inductor in torch 2.13 fails to compile the backward of a strided conv2d with ``dynamic=True`` (``LoweringException:
ValueRangeError: Invalid ranges [0:-1]``), and a problem's stride, padding, dilation and groups are compile-time
constants anyway. The compilation happens in ``warm_up`` (the runner calls it before every timed call, untimed), so the
reported times are the compiled code's. Dynamo's recompile limit is raised above ``CACHE`` and hitting it raises
(``fail_on_recompile_limit_hit``), so a problem never silently falls back to eager; after ``CACHE`` compiled graphs
Dynamo's caches are reset (``torch._dynamo.reset()``), which keeps its guard lists short. Inductor's on-disk cache
(``TORCHINDUCTOR_CACHE_DIR``, by default under the temporary directory) makes a second run of the same (derandomized)
problems a fraction of the first. Opt-in (``opt_in``): it runs only where a run names it (``--select torch-compile``,
as ``tox -e torch-compile`` does, or ``gate --impl torch-compile``): a run compiles every problem it checks, seconds
each, too long for the main job of every environment with torch.

Replicate padding is not declared: in torch 2.13 the compiled backward of ``conv2d(F.pad(x, mode="replicate"))`` with
more than one input channel raises in every dtype (Inductor expects ``replication_pad2d_backward`` to return the
channels-last strides of its incoming gradient; the ATen kernel returns a contiguous tensor: ``AssertionError: expected
size 2==2, stride 1==16 at dim=1``), eager is right. Reproduce: x (1, 2, 4, 4), w (1, 2, 3, 3), ``F.pad(x, (1, 1, 1, 1),
mode="replicate")``, ``torch.compile(fullgraph=True, dynamic=False)``, ``torch.autograd.grad``. Declared, it would fail
every conv2d gradient check at its first replicate draw and hide whatever else those checks find.

Inductor lowers the convolution and its backward to ATen's own kernels (extern calls: oneDNN where torch-cpu uses it)
and generates C++ (gcc) for what surrounds them (padding, the crop, their gradients): the precision profiles are
torch-cpu's (``precision_here``), checked against the oracle in every rank and dtype.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from conformance.backends.backend import Capabilities
from conformance.model.problem import ConvProblem

from .torch_cpu import TorchCPU, cpu_facts, precision_here

#: compiled graphs kept before Dynamo's caches are reset
CACHE = 64


def compile_key(method: str, problem: ConvProblem, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a compiled graph is specialised on: the pass, the problem, and each operand's shape, strides and dtype."""
    arrays = tuple((a.shape, a.strides, a.dtype.str) if isinstance(a, np.ndarray) else None for a in args)
    return (method, problem, arrays)


def configure_dynamo() -> None:
    """Recompile limits above ``CACHE`` (a limit hit raises, never falls back to eager); one compile thread."""
    import torch._dynamo
    import torch._inductor.config

    config = torch._dynamo.config
    config.recompile_limit = 4 * CACHE
    config.accumulated_recompile_limit = 4 * CACHE
    config.fail_on_recompile_limit_hit = True
    torch._inductor.config.compile_threads = 1  # the machine is shared: no pool of compile workers


class TorchCompile(TorchCPU):
    """``torch-cpu`` compiled by ``torch.compile`` (Inductor), forward and backward."""

    name = "torch-compile"
    opt_in = "Inductor compiles each problem it checks, seconds a problem (tox -e torch-compile names it)"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                padding_modes=("zeros", "reflect", "circular"), asymmetric_padding=True,
                                precision=precision_here, ranks=(1, 2, 3), transposed=True,
                                notes="torch.compile (Inductor, CPU), fullgraph, dynamic=False, one graph per problem "
                                      "and pass; compiled backward (AOTAutograd); no replicate padding (torch 2.13: "
                                      "its compiled conv2d backward raises)")

    def __init__(self) -> None:
        self._compiled: dict[Any, Any] = {}    #: problem -> its compiled convolution
        self._warm: set[tuple[Any, ...]] = set()  #: compile_key of every call compiled so far

    def environment(self) -> dict[str, str]:
        return cpu_facts() | {"compile": "inductor, fullgraph, dynamic=False"}

    def warm_up(self, method: str, args: tuple[Any, ...]) -> None:
        """Compile for this call's problem, pass and operand layouts by making the call once (untimed)."""
        key = compile_key(method, args[0], args[1:])
        if key in self._warm:
            return
        getattr(self, method)(*args)
        self._warm.add(key)

    def _function(self, problem: ConvProblem) -> Any:
        """The compiled convolution of ``problem`` (``TorchCPU._conv`` with the problem bound)."""
        import torch

        if problem not in self._compiled:
            configure_dynamo()
            if len(self._compiled) >= CACHE:
                torch._dynamo.reset()
                self._compiled.clear()
                self._warm.clear()
            self._compiled[problem] = torch.compile(functools.partial(TorchCPU._conv, self, problem),
                                                    fullgraph=True, dynamic=False)
        return self._compiled[problem]

    def _conv(self, problem: ConvProblem, x: Any, w: Any, b: Any) -> Any:
        return self._function(problem)(x, w, b)
