"""Checks that need no oracle: a backend's forward and backward must agree with each other and with algebra.

All run in float64, where they have power (in float32 the adjoint test lost a flipped kernel at K = 6400). With
``L(x, w) = ⟨conv(x, w), g⟩`` for a random upstream gradient ``g``:

``adjoint``            ⟨conv(x, w), g⟩ = ⟨x, dx(g)⟩ = ⟨w, dw(g)⟩
``finite_difference``  (L(x+v, w) − L(x−v, w)) / 2 = ⟨dx(g), v⟩ and the same in w; conv is bilinear, so a unit
                       step is exact up to rounding
``linearity``          conv(a·x1 + x2, w) = a·conv(x1, w) + conv(x2, w), and the same in w
``batch``              conv(x, w)[n] = conv(x[n:n+1], w)[0] for every sample n
``transpose_adjoint``  of a transposed problem, across the two operations of one backend: ⟨conv_transpose(x, w), y⟩
                       = ⟨x, conv(y, w)⟩, with the convolution of the same geometry (its input the transposed
                       output); where the output padding reaches past the stride (of dilation's kind) no
                       convolution of that geometry maps back, and it does not run

Each bound is the deterministic one, ``γ(K, 2^-53)`` times the magnitude of what was summed, doubled because
both sides carry rounding errors; a normwise backend (FFT) adds each evaluation's normwise bound, since its
rounding reaches elements that no product does.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from conformance.backends import runner
from conformance.model.problem import ConvProblem
from conformance.numerics import reference as R
from conformance.numerics.compare import Verdict
from conformance.numerics.tolerance import PROFILES, gamma, norm_bound, term_counts, terms

U64 = 2.0**-53
CHECKS = ("adjoint", "finite_difference", "linearity", "batch", "transpose_adjoint")
#: the identities of transposed problems only
TRANSPOSED_ONLY = ("transpose_adjoint",)


class _Failed(Exception):
    """A backend call failed; carries the error text."""


class _Timed(runner.Caller):
    """Calls ``backend`` (a ``runner.Caller``, or a plain backend: directly) and adds up the seconds spent inside it
    over the calls (what ``run_all`` returns, and its rows record)."""

    def __init__(self, backend: Any) -> None:
        self.caller = backend if isinstance(backend, runner.Caller) else runner.DirectCaller(backend)
        self.name, self.capabilities = backend.name, backend.capabilities
        self.seconds = 0.0

    def call(self, method: str, *args: Any, repeat: int = 1, layout: str | None = "contiguous") -> runner.Outcome:
        out = self.caller.call(method, *args, repeat=repeat, layout=layout)
        self.seconds += out.seconds
        return out


def _call(backend: Any, method: str, *args: Any) -> Any:
    out = runner.call(backend, method, *args)
    if not out.ok:
        raise _Failed(out.error)
    return out.value


def _fwd(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.asarray(_call(backend, "forward", p, x, w, None), dtype=np.float64)


def _grads(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    dx, dw, _ = _call(backend, "backward", p, x, w, g)
    return np.asarray(dx, dtype=np.float64), np.asarray(dw, dtype=np.float64)


def _scalar_verdict(impl: str, check: str, lhs: float, rhs: float, bound: float, what: str) -> Verdict:
    err = abs(lhs - rhs)
    ratio = 0.0 if err == 0 else (err / bound if bound > 0 else float("inf"))
    if not np.isfinite(err):
        ratio = float("inf")
    return Verdict(impl, check, ratio <= 1.0, ratio, n_elements=1, n_mismatched=int(ratio > 1.0), worst_index=(),
                   worst_actual=float(lhs), worst_expected=float(rhs), worst_error=err, worst_bound=bound,
                   bound_kind="det", profile="fp64", formula=f"2·γ(K, 2^-53)·(magnitude); {what}")


def _array_verdict(impl: str, check: str, got: np.ndarray, want: np.ndarray, bound: np.ndarray, what: str) -> Verdict:
    err = np.abs(got - want)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / bound)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return Verdict(impl, check, bool((ratio <= 1).all()), float(ratio[i]), n_elements=int(ratio.size),
                   n_mismatched=int((ratio > 1).sum()), worst_index=tuple(int(v) for v in i),
                   worst_actual=float(got[i]), worst_expected=float(want[i]), worst_error=float(err[i]),
                   worst_bound=float(bound[i]), bound_kind="det", profile="fp64",
                   formula=f"2·γ(K, 2^-53)·(|a|*|b| summed over both sides); {what}")


def adjoint(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> list[Verdict]:
    y = _fwd(backend, p, x, w)
    dx, dw = _grads(backend, p, x, w, g)
    mag = float((R.forward(p, np.abs(x), np.abs(w)) * np.abs(g)).sum())
    k = float(term_counts("forward", p).max()) + y.size + max(x.size, w.size)
    bound = float(2 * gamma(k, U64) * mag)
    # a normwise backend's rounding reaches every element, even one whose exact value is a sum of no products
    # (an output that reads only padding): each side's inner product carries its passes' normwise bounds
    slack_y = float((_pass_slack(backend, p, "forward", x, w, None) * np.abs(g)).sum())
    slack_dx = float((np.abs(x) * _pass_slack(backend, p, "grad_input", x, w, g)).sum())
    slack_dw = float((np.abs(w) * _pass_slack(backend, p, "grad_weight", x, w, g)).sum())
    lhs = float((y * g).sum())
    return [_scalar_verdict(backend.name, "adjoint", lhs, float((x * dx).sum()), bound + slack_y + slack_dx,
                            "⟨conv(x,w), g⟩ vs ⟨x, dx(g)⟩"),
            _scalar_verdict(backend.name, "adjoint", lhs, float((w * dw).sum()), bound + slack_y + slack_dw,
                            "⟨conv(x,w), g⟩ vs ⟨w, dw(g)⟩")]


def finite_difference(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray, g: np.ndarray,
                      vx: np.ndarray, vw: np.ndarray) -> list[Verdict]:
    dx, dw = _grads(backend, p, x, w, g)
    k = float(term_counts("forward", p).max()) + g.size + max(x.size, w.size)
    out = []
    for name, direction, grad, plus_x, minus_x, plus_w, minus_w, check in (
        ("x", vx, dx, x + vx, x - vx, w, w, "grad_input"),
        ("w", vw, dw, x, x, w + vw, w - vw, "grad_weight"),
    ):
        plus, minus = _fwd(backend, p, plus_x, plus_w), _fwd(backend, p, minus_x, minus_w)
        fd = float(((plus - minus) * g).sum()) / 2
        ax, aw = (np.abs(x) + np.abs(vx), np.abs(w)) if name == "x" else (np.abs(x), np.abs(w) + np.abs(vw))
        mag = float((R.forward(p, ax, aw) * np.abs(g)).sum()) + float((np.abs(grad) * np.abs(direction)).sum())
        slack = (float((_transform_slack(backend, p, (plus_x, plus_w), (minus_x, minus_w)) * np.abs(g)).sum()) / 2
                 + float((np.abs(direction) * _pass_slack(backend, p, check, x, w, g)).sum()))
        out.append(_scalar_verdict(backend.name, "finite_difference", fd, float((grad * direction).sum()),
                                   float(2 * gamma(k, U64) * mag) + slack, f"central difference along a random {name}"))
    return out


def _pass_slack(backend: Any, p: ConvProblem, check: str, x: np.ndarray, w: np.ndarray,
                dy: np.ndarray | None) -> np.ndarray | float:
    """A normwise backend (FFT) spreads rounding over whole planes: its normwise bound for pass ``check``."""
    if backend.capabilities.error_model != "normwise":
        return 0.0
    return norm_bound(check, p, terms(check, p, x, w, None, dy), PROFILES["fp64"], x, w, dy)


def _transform_slack(backend: Any, p: ConvProblem, *pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray | float:
    """The normwise slack of a forward evaluation at each (x, w) pair, summed; 0 for a componentwise backend."""
    return sum((_pass_slack(backend, p, "forward", a, b, None) for a, b in pairs), 0.0)


def linearity(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray, x2: np.ndarray, w2: np.ndarray,
              a: float = 0.75) -> list[Verdict]:
    kmax = term_counts("forward", p) + 2
    out = []
    for name, mix, parts, mags in (
        ("x", lambda: _fwd(backend, p, a * x + x2, w), lambda: a * _fwd(backend, p, x, w) + _fwd(backend, p, x2, w),
         lambda: R.forward(p, np.abs(a * x) + np.abs(x2) + np.abs(a * x + x2), np.abs(w))),
        ("w", lambda: _fwd(backend, p, x, a * w + w2), lambda: a * _fwd(backend, p, x, w) + _fwd(backend, p, x, w2),
         lambda: R.forward(p, np.abs(x), np.abs(a * w) + np.abs(w2) + np.abs(a * w + w2))),
    ):
        bound = 2 * gamma(kmax, U64) * mags() + 4 * U64 * np.abs(parts_val := parts())
        bound = bound + 2 * _transform_slack(backend, p, (x, w), (x2, w), (x, w2), (a * x + x2, a * w + w2))
        out.append(_array_verdict(backend.name, "linearity", mix(), parts_val, bound,
                                  f"conv(a·{name}1 + {name}2) vs a·conv({name}1) + conv({name}2)"))
    return out


def batch(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray) -> list[Verdict]:
    whole = _fwd(backend, p, x, w)
    one = p.replace(batch=1)
    parts = np.concatenate([_fwd(backend, one, np.ascontiguousarray(x[n:n + 1]), w) for n in range(p.batch)])
    bound = 2 * gamma(term_counts("forward", p), U64) * R.forward(p, np.abs(x), np.abs(w))
    bound = bound + 2 * _transform_slack(backend, p, (x, w))
    return [_array_verdict(backend.name, "batch", whole, parts, bound, "conv(x)[n] vs conv(x[n:n+1])[0]")]


def dual_convolution(p: ConvProblem) -> ConvProblem | None:
    """The convolution whose input gradient a transposed ``p`` is: the same weight, kernel, stride, padding and
    dilation, its input ``p``'s output, its output ``p``'s input (None where no such convolution exists: an output
    padding of at least the stride)."""
    q = p.replace(transposed=False, output_padding=(0,) * p.rank, c_in=p.c_out, c_out=p.c_in,
                  **dict(zip(p.axes, p.out_sizes)))
    return q if q.out_sizes == p.in_sizes else None


def transpose_adjoint(backend: Any, p: ConvProblem, x: np.ndarray, w: np.ndarray, y: np.ndarray) -> list[Verdict]:
    q = dual_convolution(p)
    if q is None or backend.capabilities.unsupported_reason(q):
        return []
    lhs = float((_fwd(backend, p, x, w) * y).sum())
    rhs = float((x * _fwd(backend, q, y, w)).sum())
    mag = float((R.forward(p, np.abs(x), np.abs(w)) * np.abs(y)).sum())
    k = float(term_counts("forward", p).max() + term_counts("forward", q).max()) + y.size + x.size
    slack = (float((_pass_slack(backend, p, "forward", x, w, None) * np.abs(y)).sum())
             + float((np.abs(x) * _pass_slack(backend, q, "forward", y, w, None)).sum()))
    return [_scalar_verdict(backend.name, "transpose_adjoint", lhs, rhs, float(2 * gamma(k, U64) * mag) + slack,
                            "⟨conv_transpose(x,w), y⟩ vs ⟨x, conv(y,w)⟩")]


def run_all(backend: Any, p: ConvProblem, rng: np.random.Generator) -> tuple[dict[str, list[Verdict]], float]:
    """(every oracle-free check's verdicts, on float64 normal data, a failing call an error verdict of that check;
    the seconds spent inside the backend over all their calls)."""
    timed = _Timed(backend)  # each check calls the backend through it
    x, w = rng.standard_normal(p.input_shape), rng.standard_normal(p.weight_shape)
    g = rng.standard_normal(p.output_shape)
    x2, w2 = rng.standard_normal(p.input_shape), rng.standard_normal(p.weight_shape)
    vx, vw = rng.standard_normal(p.input_shape), rng.standard_normal(p.weight_shape)
    plan: dict[str, Callable[[], list[Verdict]]] = {
        "adjoint": lambda: adjoint(timed, p, x, w, g),
        "finite_difference": lambda: finite_difference(timed, p, x, w, g, vx, vw),
        "linearity": lambda: linearity(timed, p, x, w, x2, w2),
        "batch": lambda: batch(timed, p, x, w),
    }
    if p.transposed:
        plan["transpose_adjoint"] = lambda: transpose_adjoint(timed, p, x, w, g)
    if not backend.capabilities.backward:
        plan = {k: v for k, v in plan.items() if k in ("linearity", "batch")}
    results = {}
    for name, fn in plan.items():
        try:
            verdicts = fn()
            if verdicts:
                results[name] = verdicts
        except _Failed as exc:
            results[name] = [Verdict(backend.name, name, False, float("inf"), problem_text=str(exc))]
    return results, timed.seconds
