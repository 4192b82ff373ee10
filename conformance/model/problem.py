"""The convolution problem: geometry and dtype of one ``conv1d``, ``conv2d`` or ``conv3d`` call, its derived shapes,
one validator.

Semantics are ``torch.nn.Conv1d/2d/3d``: cross-correlation, input ``(N, C_in, *sizes)`` with the spatial axes
``(w,)``, ``(h, w)`` or ``(d, h, w)`` (NCL, NCHW, NCDHW), weight ``(C_out, C_in / groups, *kernel)``, optional bias
``(C_out,)``, padding with ``padding_mode`` zeros, reflect, replicate or circular
(``torch.nn.Conv2d(padding_mode=...)``).
The rank is given by the axes set: ``w`` and ``kw`` alone is 1-D, with ``h``/``kh`` 2-D, with ``d``/``kd`` too 3-D.
Per-axis values (stride, padding, dilation) are tuples outermost axis first; an int means every axis. ``padding``
is applied on both sides, as torch has it; ONNX-style asymmetric padding gives the far sides in ``padding_end``, and
the strings ``"same"`` and ``"valid"`` are resolved as torch resolves them (for ``"same"`` the odd extra element goes
to the far side). Along each axis the output size is::

    out = (in + pad_begin + pad_end - dilation*(k - 1) - 1) // stride + 1

Every rule lives in one function below, so an invalid problem raises one ``InvalidProblem``
whose message names the values and the rule (``groups=3 must divide c_in=4``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.errors import InvalidProblem

Pair = tuple[int, int]
#: one int per spatial axis, outermost first
Axes = tuple[int, ...]
#: the spatial axes of each rank, outermost first (torch's NCL, NCHW, NCDHW)
AXIS_NAMES: dict[int, tuple[str, ...]] = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
RANKS = tuple(AXIS_NAMES)
#: the name of each rank in test ids, options and reports (``pytest -k conv3d``), as torch names the functions
RANK_IDS: dict[int, str] = {r: f"conv{r}d" for r in RANKS}


def parse_rank(text: str) -> int:
    """``"3"`` or ``"conv3d"`` -> 3; ``InvalidProblem`` naming the choices otherwise."""
    t = text.strip().lower()
    for r, name in RANK_IDS.items():
        if t in (str(r), name, f"{r}d"):
            return r
    raise InvalidProblem(f"rank {text!r}, but it must be one of {', '.join(map(str, RANKS))} or "
                         f"{', '.join(RANK_IDS.values())}")

#: dtypes the problem model knows. Which of them a backend supports is its own declaration.
DTYPES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")


def numpy_dtype(name: str) -> Any:
    """numpy's dtype for one of ``DTYPES``; bfloat16 comes from the ``ml_dtypes`` package."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _axes(name: str, value: Any, rank: int) -> Axes:
    """``value`` per spatial axis: an int for every axis, or one int per axis (outermost first)."""
    what = {1: "an int", 2: "an int or a pair of ints"}.get(rank, f"an int or {rank} ints (one per axis "
                                                                  f"{', '.join(AXIS_NAMES[rank])})")
    if isinstance(value, bool):
        raise InvalidProblem(f"{name}={value!r}, but it must be {what}")
    if isinstance(value, int):
        return (value,) * rank
    try:
        values = tuple(value)
    except TypeError:
        raise InvalidProblem(f"{name}={value!r}, but it must be {what}") from None
    if len(values) != rank or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InvalidProblem(f"{name}={value!r}, but it must be {what}")
    return tuple(int(v) for v in values)


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidProblem(f"{name}={v!r}, but it must be an int")
        if v < 1:
            raise InvalidProblem(f"{name}={v}, but it must be at least 1")


def _check_axes_at_least(name: str, values: Axes, axes: tuple[str, ...], minimum: int) -> None:
    for axis, v in zip(axes, values):
        if v < minimum:
            shown = values if len(values) > 1 else values[0]
            raise InvalidProblem(f"{name}={shown} ({axis}={v}), but it must be at least {minimum}")


def _check_groups(groups: int, c_in: int, c_out: int) -> None:
    if c_in % groups:
        raise InvalidProblem(f"groups={groups} must divide c_in={c_in}")
    if c_out % groups:
        raise InvalidProblem(f"groups={groups} must divide c_out={c_out}")


def _check_kernel_fits(axis: str, size: int, k: int, pad: int, dil: int, pad_end: int | None = None) -> None:
    span = dil * (k - 1) + 1
    end = pad if pad_end is None else pad_end
    if span > size + pad + end:
        what = f"{axis}+2*padding={size + 2 * pad}" if end == pad else f"{axis}+padding+padding_end={size + pad + end}"
        pads = f"padding={pad}" if end == pad else f"padding={pad}, padding_end={end}"
        raise InvalidProblem(
            f"dilation*(k{axis}-1)+1={span} exceeds padded {AXIS_WORDS[axis]} "
            f"{what} ({axis}={size}, k{axis}={k}, {pads}, dilation={dil})"
        )


def _shown(values: Axes) -> Any:
    return values if len(values) > 1 else values[0]


def _check_transposed(p: "ConvProblem", axes: tuple[str, ...]) -> None:
    """torch's rules of a transposed convolution, per axis: output padding smaller than the stride or the dilation,
    an output of at least one element; zero padding only."""
    for axis, op, s, d in zip(axes, p.output_padding, p.stride, p.dilation):
        if op >= s and op >= d:
            raise InvalidProblem(f"output_padding={_shown(p.output_padding)} ({axis}={op}), but output padding must be "
                                 f"smaller than either the stride ({s}) or the dilation ({d}) (as in torch)")
    for axis, n, k, s, b, e, d, op in zip(axes, p.in_sizes, p.kernel, p.stride, p.padding, p.pad_end, p.dilation,
                                          p.output_padding):
        out = (n - 1) * s - b - e + d * (k - 1) + op + 1
        if out < 1:
            raise InvalidProblem(f"the transposed output along {axis} is (in-1)*stride - padding - padding_end + "
                                 f"dilation*(k-1) + output_padding + 1 = {out} ({axis}={n}, k{axis}={k}, stride={s}, "
                                 f"padding={b}, padding_end={e}, dilation={d}, output_padding={op}), but it must be at "
                                 "least 1")
    if p.padding_mode != "zeros":
        raise InvalidProblem(f"padding_mode={p.padding_mode!r} with transposed=True, but a transposed convolution "
                             "pads with zeros only (as torch's ConvTranspose)")


def operation_name(rank: int, transposed: bool) -> str:
    """``conv2d``, ``conv_transpose3d``: torch's function for a rank and a kind."""
    return f"conv{'_transpose' if transposed else ''}{rank}d"


#: the kinds of operation (``--ops``): convolution, transposed convolution
KINDS = ("conv", "conv_transpose")


def operation_of(name: str) -> tuple[int, bool]:
    """``"conv_transpose3d"`` -> (3, True); ``InvalidProblem`` naming the operations otherwise."""
    m = re.fullmatch(r"conv(_transpose)?([123])d", name)
    if m is None:
        raise InvalidProblem(f"operation {name!r}, but it must be one of "
                             + ", ".join(operation_name(r, t) for t in (False, True) for r in RANKS))
    return int(m.group(2)), bool(m.group(1))


AXIS_WORDS = {"d": "depth", "h": "height", "w": "width"}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check_padding_mode(mode: str, axes: tuple[str, ...], size: Axes, begin: Axes, end: Axes) -> None:
    """torch's rules: reflect needs every pad < the input size, circular every pad <= it (one wrap at most)."""
    if mode not in PADDING_MODES:
        raise InvalidProblem(f"padding_mode={mode!r}, but it must be one of {', '.join(PADDING_MODES)}")
    for axis, n, pads in zip(axes, size, zip(begin, end)):
        worst = max(pads)
        if mode == "reflect" and worst >= n:
            raise InvalidProblem(f"padding_mode='reflect' needs padding < the input size, but padding {worst} >= "
                                 f"{axis}={n}")
        if mode == "circular" and worst > n:
            raise InvalidProblem(f"padding_mode='circular' needs padding <= the input size (it wraps around once), "
                                 f"but padding {worst} > {axis}={n}")


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise InvalidProblem(f"dtype={dtype!r}, but it must be one of {', '.join(DTYPES)}")


@dataclass(frozen=True)
class ConvProblem:
    """One convolution problem of 1, 2 or 3 spatial dimensions. Per-axis values are tuples, outermost axis first
    (2-D: ``(h, w)``); an int is accepted for every axis. A 2-D problem names ``h, w, kh, kw``; a 1-D one only
    ``w, kw``; a 3-D one adds ``d, kd``.

    >>> p = ConvProblem(batch=1, c_in=1, c_out=1, h=6, w=5, kh=3, kw=3)
    >>> p.output_shape
    (1, 1, 4, 3)
    >>> ConvProblem(batch=1, c_in=1, c_out=1, w=16, kw=3, stride=2).output_shape
    (1, 1, 7)
    """

    batch: int
    c_in: int
    c_out: int
    h: int = 0   #: 0 in a 1-D problem (not given)
    w: int = 0   #: the innermost axis
    kh: int = 0
    kw: int = 0
    stride: Axes = (1, 1)
    padding: Axes = (0, 0)
    dilation: Axes = (1, 1)
    groups: int = 1
    bias: bool = False
    dtype: str = "float64"
    padding_mode: str = "zeros"
    #: the far-side padding (2-D: bottom, right) where it differs from ``padding``; None: symmetric, as torch
    padding_end: Axes | None = None
    #: free-form label (a network layer's name, a tier); not part of the geometry
    label: str = field(default="", compare=False)
    #: the depth axis of a 3-D problem (0 otherwise)
    d: int = 0
    kd: int = 0
    #: a transposed convolution (``torch.nn.functional.conv_transpose1d/2d/3d``, ONNX ConvTranspose): the adjoint of
    #: the convolution of the same geometry, weight ``(C_in, C_out / groups, *kernel)``
    transposed: bool = False
    #: the extra elements at the far end of a transposed convolution's output, per axis (torch's ``output_padding``)
    output_padding: Axes = (0, 0)

    def __post_init__(self) -> None:
        rank = self._rank_of_fields()
        for f in dataclasses.fields(self):  # the defaults are written as 2-D pairs; they hold for every rank
            if f.name in ("stride", "padding", "dilation", "output_padding") and getattr(self, f.name) == f.default \
                    and rank != 2:
                object.__setattr__(self, f.name, f.default[0])  # type: ignore[index]
        for name in ("stride", "dilation", "output_padding"):
            object.__setattr__(self, name, _axes(name, getattr(self, name), rank))
        if isinstance(self.padding, str):
            self._resolve_padding_string(rank)
        elif rank == 2 and isinstance(self.padding, (tuple, list)) and len(self.padding) == 4:
            top, bottom, left, right = self.padding  # ONNX's order would be (top, left, bottom, right): see docs
            object.__setattr__(self, "padding", _axes("padding", (top, left), 2))
            object.__setattr__(self, "padding_end", _axes("padding_end", (bottom, right), 2))
        else:
            object.__setattr__(self, "padding", _axes("padding", self.padding, rank))
        if self.padding_end is not None:
            end = _axes("padding_end", self.padding_end, rank)
            object.__setattr__(self, "padding_end", None if end == self.padding else end)
        numpy_type = isinstance(self.dtype, type) and issubclass(self.dtype, np.generic)
        if isinstance(self.dtype, np.dtype) or numpy_type:  # equal to its name, but not the same: store the name
            object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if not isinstance(self.bias, bool):
            raise InvalidProblem(f"bias={self.bias!r}, but it must be True or False")
        if not isinstance(self.transposed, bool):
            raise InvalidProblem(f"transposed={self.transposed!r}, but it must be True or False")
        self.validate()

    def _rank_of_fields(self) -> int:
        """1, 2 or 3 from the axes given (0: not given): ``d``/``kd`` make it 3-D, else ``h``/``kh`` 2-D, else 1-D;
        an axis of that rank left 0 is then an invalid size (``validate``)."""
        return 3 if self.d or self.kd else 2 if self.h or self.kh else 1

    def _resolve_padding_string(self, rank: int) -> None:
        """``"valid"``: no padding. ``"same"``: out = in, total = dilation*(k-1) split as torch splits it."""
        if self.padding == "valid":
            object.__setattr__(self, "padding", (0,) * rank)
            return
        if self.padding != "same":
            raise InvalidProblem(f"padding={self.padding!r}, but a string padding must be 'same' or 'valid'")
        if self.transposed:
            raise InvalidProblem("padding='same' with transposed=True, but a transposed convolution takes numbers "
                                 "(as torch's conv_transpose; ONNX's auto_pad SAME_UPPER/SAME_LOWER resolve to pads)")
        if any(s != 1 for s in self.stride):
            shown = self.stride if rank > 1 else self.stride[0]
            raise InvalidProblem(f"padding='same' with stride={shown}, but 'same' is not supported for "
                                 "strided convolutions (as in torch)")
        totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
        begin = tuple(t // 2 for t in totals)
        end = tuple(t - t // 2 for t in totals)
        object.__setattr__(self, "padding", begin)
        object.__setattr__(self, "padding_end", end)

    def validate(self) -> None:
        """Raise ``InvalidProblem`` naming the first broken rule."""
        axes = self.axes
        sizes = {a: getattr(self, a) for a in axes} | {f"k{a}": getattr(self, f"k{a}") for a in axes}
        _check_positive(batch=self.batch, c_in=self.c_in, c_out=self.c_out, **sizes, groups=self.groups)
        _check_axes_at_least("stride", self.stride, axes, 1)
        _check_axes_at_least("dilation", self.dilation, axes, 1)
        _check_axes_at_least("padding", self.padding, axes, 0)
        _check_groups(self.groups, self.c_in, self.c_out)
        if self.padding_end is not None:
            _check_axes_at_least("padding_end", self.padding_end, axes, 0)
        end = self.pad_end
        _check_axes_at_least("output_padding", self.output_padding, axes, 0)
        if self.transposed:
            _check_transposed(self, axes)
        else:
            if any(self.output_padding):
                raise InvalidProblem(f"output_padding={_shown(self.output_padding)}, but output padding applies to "
                                     "a transposed convolution only (transposed=False)")
            for i, axis in enumerate(axes):
                _check_kernel_fits(axis, self.in_sizes[i], self.kernel[i], self.padding[i], self.dilation[i], end[i])
        _check_padding_mode(self.padding_mode, axes, self.in_sizes, self.padding, end)
        _check_dtype(self.dtype)

    # -- derived shapes ---------------------------------------------------------------
    @property
    def rank(self) -> int:
        """The number of spatial dimensions: 1 (conv1d), 2 (conv2d) or 3 (conv3d)."""
        return self._rank_of_fields()

    @property
    def axes(self) -> tuple[str, ...]:
        """The spatial axes' names, outermost first: ``("w",)``, ``("h", "w")``, ``("d", "h", "w")``."""
        return AXIS_NAMES[self.rank]

    @property
    def in_sizes(self) -> Axes:
        """The input's spatial sizes, outermost first."""
        return tuple(getattr(self, a) for a in self.axes)

    @property
    def kernel(self) -> Axes:
        """The kernel's spatial sizes, outermost first."""
        return tuple(getattr(self, "k" + a) for a in self.axes)

    @property
    def out_sizes(self) -> Axes:
        """The output's spatial sizes: ``(in + pad_begin + pad_end - dilation*(k - 1) - 1) // stride + 1``; of a
        transposed convolution ``(in - 1)*stride - pad_begin - pad_end + dilation*(k - 1) + output_padding + 1``."""
        if self.transposed:
            return tuple((n - 1) * s - p - e + d * (k - 1) + op + 1 for n, k, s, p, e, d, op in
                         zip(self.in_sizes, self.kernel, self.stride, self.padding, self.pad_end, self.dilation,
                             self.output_padding))
        return tuple((n + p + e - d * (k - 1) - 1) // s + 1 for n, k, s, p, e, d in
                     zip(self.in_sizes, self.kernel, self.stride, self.padding, self.pad_end, self.dilation))

    @property
    def operation(self) -> str:
        """torch's name of the call: ``conv1d``/``conv2d``/``conv3d``, ``conv_transpose1d``/``2d``/``3d``; test ids,
        options and reports name a problem's kind by it."""
        return operation_name(self.rank, self.transposed)

    @property
    def pad_end(self) -> Axes:
        """The far-side padding (2-D: bottom, right): ``padding_end`` where given, else ``padding``."""
        return self.padding if self.padding_end is None else self.padding_end

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of a 2-D problem."""
        if self.rank != 2:
            raise InvalidProblem(f"pads is the 2-D spelling (top, bottom, left, right); this problem is {self.rank}-D: "
                                 "use padding and pad_end")
        return (self.padding[0], self.pad_end[0], self.padding[1], self.pad_end[1])

    @property
    def asymmetric(self) -> bool:
        return self.padding_end is not None

    @property
    def out_h(self) -> int:
        """The output height (the second innermost axis; 2-D and 3-D)."""
        return self.out_sizes[-2]

    @property
    def out_w(self) -> int:
        """The output width (the innermost axis)."""
        return self.out_sizes[-1]

    @property
    def np_dtype(self) -> Any:
        """The numpy dtype of the operands (bfloat16 is ml_dtypes' extension type)."""
        return numpy_dtype(self.dtype)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.c_in, *self.in_sizes)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(C_out, C_in / groups, *kernel)``; transposed: ``(C_in, C_out / groups, *kernel)``, as torch has it."""
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, *self.kernel)
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    @property
    def bias_shape(self) -> tuple[int]:
        return (self.c_out,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.c_out, *self.out_sizes)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass (each backward pass has the same count)."""
        if self.transposed:  # every input element meets every tap of its group's output channels
            return self.batch * self.c_in * math.prod(self.in_sizes) * (self.c_out // self.groups) \
                * math.prod(self.kernel)
        return self.batch * self.c_out * math.prod(self.out_sizes) * (self.c_in // self.groups) * math.prod(self.kernel)

    @property
    def max_elements(self) -> int:
        """The largest operand, in elements."""
        return max(math.prod(self.input_shape), math.prod(self.output_shape), math.prod(self.weight_shape))

    # -- (de)serialisation: records, reproductions --------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # the fields are ints, strs and tuples of ints: a shallow read (dataclasses.asdict deep-copies every value,
        # which costs more than a whole small example's comparison)
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("stride", "padding", "dilation", "padding_end", "output_padding"):
            d[k] = None if d[k] is None else list(d[k])
        for k, default in (("label", ""), ("padding_mode", "zeros"), ("padding_end", None), ("d", 0), ("kd", 0),
                           ("h", 0), ("kh", 0), ("transposed", False)):
            if d[k] == default:
                del d[k]  # records and reproductions of plain 2-D problems stay as they were; no absent axes
        if not any(d["output_padding"]):
            del d["output_padding"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConvProblem":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidProblem(f"unknown problem fields {sorted(unknown)}; known are {sorted(known)}")
        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "ConvProblem":
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        """The canonical descriptor (grammar in ``parse``): every key its geometry needs and no default but the
        dtype, ``ConvProblem.parse(str(p)) == p``."""
        return _format(self)

    @classmethod
    def parse(cls, text: str) -> "ConvProblem":
        """The problem a descriptor spells, as benchdnn's ``str2desc`` reads its problem strings::

            descriptor := token { ["_"] token }          (an "_" may separate any two tokens; it means nothing)
            token      := key INT | flag | 'n"' label '"'
            key        := mb ic oc  ih iw  kh kw  sh sw  ph pw  eh ew  dh dw  oph opw  g
            flag       := bias | transposed | zeros | reflect | replicate | circular | float64 | float32 | float16
                          | bfloat16

        ``mb`` is the batch, ``ic``/``oc`` the input/output channels, then per spatial axis (``h``, ``w``) the
        input size ``i``, kernel ``k``, stride ``s``, begin (top/left) padding ``p``, end (bottom/right) padding
        ``e`` where it differs from the begin padding (ONNX-style asymmetric), dilation ``d`` (torch's: 1 is none;
        benchdnn's 0 is an error here), output padding ``op`` (a transposed convolution's), then ``g`` the groups.
        ``transposed`` makes it a transposed convolution (``ic512oc256ih8kh4sh2ph1_transposed``: DCGAN's 8x8 to
        16x16). ``bias`` adds a bias; the padding mode and the dtype
        are words. ``n"..."`` is the label (``\\"`` and ``\\\\`` escape a quote and a backslash in it).

        Required: ``ic oc ih kh``. Defaults: ``mb1`` (benchdnn's is 2), ``sh1 ph0 dh1 g1``, no end padding (as the
        begin), no bias, ``zeros``, ``float64`` (the constructor's), no label; a missing ``w`` key is its ``h`` key
        (``ih5`` is 5x5, ``ph1`` pads 1 on both axes); a ``w`` key without its ``h`` key is an error (``w``-only
        descriptors are kept for 1-d problems). Keys may come in any order, each once; ``str(p)`` writes the order
        above, both axes of every non-default pair, and always the dtype::

            >>> p = ConvProblem.parse('ic3oc8ih9kh3sh2ph1_bias')
            >>> str(p.replace(label="conv1"))
            'mb1ic3oc8ih9iw9kh3kw3sh2sw2ph1pw1_bias_float64_n"conv1"'
            >>> ConvProblem.parse(str(p)) == p
            True

        A token that is not in the grammar, a key or flag given twice and a missing required key raise
        ``InvalidProblem`` naming the token and its position (0-based, with a caret) and the grammar; a descriptor
        that reads but breaks a rule of the problem raises the constructor's ``InvalidProblem``.
        """
        return _parse(cls, text)

    def __repr__(self) -> str:
        # a copy-pasteable constructor call, the label only where one is set
        defaults = {"label": "", "padding_mode": "zeros", "padding_end": None, "d": 0, "kd": 0, "h": 0, "kh": 0,
                    "transposed": False, "output_padding": (0,) * self.rank}
        names = [f.name for f in dataclasses.fields(self)]
        order = names[:3] + ["d", "h", "w", "kd", "kh", "kw"] + [n for n in names[3:] if n not in "d h w kd kh kw"]
        shown = [n for n in order if n not in defaults or getattr(self, n) != defaults[n]]
        return "ConvProblem(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in shown) + ")"


# -- the descriptor: str(problem) and ConvProblem.parse -------------------------------------------------------------
#: every spatial axis a descriptor can name, outermost first: a 3-D problem has all three, a 2-D one h and w, a
#: 1-D one w alone (benchdnn's convention)
AXES = ("d", "h", "w")
#: per-axis key prefixes in canonical order, what each is, and its default (None: required, or for "e" the begin
#: padding); a key is the prefix and the axis: ``ih``, ``kw``, ``eh``, ``id``
AXIS_KEYS: tuple[tuple[str, str, int | None], ...] = (
    ("i", "input size", None), ("k", "kernel", None), ("s", "stride", 1), ("p", "padding (begin)", 0),
    ("e", "padding (end)", None), ("d", "dilation", 1), ("op", "output padding (transposed)", 0))
#: the flag words, by what they set (each at most once)
FLAGS: dict[str, tuple[str, ...]] = {"bias": ("bias",), "transposed": ("transposed",), "padding mode": PADDING_MODES,
                                     "dtype": DTYPES}
_KEYS = ("mb", "ic", "oc", *(f + a for f, _, _ in AXIS_KEYS for a in AXES), "g")
_FLAG_SLOT = {word: slot for slot, words in FLAGS.items() for word in words}
#: the grammar, as parse errors show it (canonical order; keys may come in any order)
GRAMMAR = ("[mb<n>]ic<n>oc<n>"
           + "".join(f"{f}h<n>[{f}w<n>]" if f in "ik" else f"[{f}h<n>[{f}w<n>]]" for f, _, _ in AXIS_KEYS)
           + "[g<n>][_bias][_transposed][_" + "|_".join(PADDING_MODES) + "][_" + "|_".join(DTYPES) + '][_n"label"]'
           + " (3-D: each d key before its h key; 1-D: the w keys alone)")
_EXAMPLE = 'mb2ic3oc8ih9iw9kh3kw3sh2sw2ph1pw1_bias_float32_n"conv1"'
#: a word (lazy, so that "biasn\"x\"" ends before the label) and its integer
_WORD = re.compile(r'([a-z]+?)(?=n"|[^a-z]|$)([0-9]*)')


def _format(p: ConvProblem) -> str:
    per_axis = {"i": p.in_sizes, "k": p.kernel, "s": p.stride, "p": p.padding, "e": p.padding_end,
                "d": p.dilation, "op": p.output_padding}
    out = [f"mb{p.batch}ic{p.c_in}oc{p.c_out}"]
    for prefix, _, default in AXIS_KEYS:
        values = per_axis[prefix]
        # (the end padding is set only where it differs from the begin padding: then it is written)
        if values is not None and (default is None or any(v != default for v in values)):
            out.append("".join(f"{prefix}{a}{v}" for a, v in zip(p.axes, values)))
    if p.groups != 1:
        out.append(f"g{p.groups}")
    flags = (["bias"] if p.bias else []) + (["transposed"] if p.transposed else []) \
        + ([p.padding_mode] if p.padding_mode != "zeros" else []) + [p.dtype]
    out.extend("_" + f for f in flags)
    if p.label:
        out.append('_n"' + p.label.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "".join(out)


def _error(text: str, why: str, pos: int | None = None) -> InvalidProblem:
    lines = [f"problem descriptor: {why}", f"  {text}"]
    if pos is not None:
        lines.append("  " + " " * pos + "^")
    lines.append(f"expected {GRAMMAR}, e.g. {_EXAMPLE}")
    return InvalidProblem("\n".join(lines))


def _read_label(text: str, start: int) -> tuple[str, int]:
    """The label of the ``n"..."`` at ``start`` and the position after its closing quote."""
    chars: list[str] = []
    i = start + 2
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(chars), i + 1
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in '"\\':
                raise _error(text, f"{text[i:i + 2]!r} at position {i}: in a label only \\\" and \\\\ are escapes",
                             i)
            i += 1
        chars.append(text[i])
        i += 1
    raise _error(text, f"the label at position {start} has no closing quote", start)


def _parse(cls: type[ConvProblem], text: str) -> ConvProblem:
    if not isinstance(text, str):
        raise InvalidProblem(f"a problem descriptor must be a string, not {type(text).__name__} ({text!r})")
    i, end = len(text) - len(text.lstrip()), len(text.rstrip())
    given: dict[str, tuple[int, str, Any]] = {}  # slot (a key, a flag group, "label") -> (position, token, value)
    while i < end:
        if text[i] == "_":
            i += 1
            continue
        start = i
        value: Any
        if text.startswith('n"', i):
            value, i = _read_label(text, i)
            slot = "label"
        else:
            m = _WORD.match(text, i, end)
            if m is None:
                bad = re.match(r"[^a-z_]+", text[i:end])
                token = bad.group(0) if bad else text[i]
                raise _error(text, f"unknown token {token!r} at position {i}", i)
            word, digits = m.groups()
            i = m.end()
            if word + digits in _FLAG_SLOT:
                slot, value = _FLAG_SLOT[word + digits], word + digits
            elif word in _KEYS and digits:
                slot, value = word, int(digits)
            elif word in _KEYS:
                raise _error(text, f"key {word!r} at position {start} needs an integer: {word}<n>", start)
            else:
                raise _error(text, f"unknown token {text[start:i]!r} at position {start}", start)
        token = text[start:i]
        if slot in given:
            first, first_token, _ = given[slot]
            raise _error(text, f"{token!r} at position {start} is a second {slot} (the first is {first_token!r} at "
                               f"position {first})", start)
        given[slot] = (start, token, value)
    axes = next(AXES[i:] for i, a in enumerate(AXES) if any(f + a in given for f, _, _ in AXIS_KEYS)) \
        if any(k in given for k in _KEYS[3:-1]) else ("h", "w")
    required = ("ic", "oc", "i" + axes[0], "k" + axes[0])
    missing = [k for k in required if k not in given]
    if missing:
        raise _error(text, f"missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for prefix, _, _ in AXIS_KEYS:
        for outer, inner in zip(axes, axes[1:]):
            if prefix + inner in given and prefix + outer not in given:
                pos, token, _ = given[prefix + inner]
                raise _error(text, f"{token!r} at position {pos} without {prefix + outer}: a key of an inner axis "
                                   f"needs the key of the axis outside it ({'-'.join(axes)})", pos)

    def get(key: str, default: Any) -> Any:
        return given[key][2] if key in given else default

    def per_axis(prefix: str, default: int) -> Axes:
        values: list[int] = []
        for a in axes:  # a missing inner axis is the axis outside it (ih5 is 5x5)
            values.append(get(prefix + a, values[-1] if values else default))
        return tuple(values)

    sizes, kernel = per_axis("i", 0), per_axis("k", 0)  # (required: never the default)
    spatial = {a: v for a, v in zip(axes, sizes)} | {"k" + a: v for a, v in zip(axes, kernel)}
    return cls(batch=get("mb", 1), c_in=get("ic", 0), c_out=get("oc", 0), **spatial,
               stride=per_axis("s", 1), padding=per_axis("p", 0),
               padding_end=per_axis("e", 0) if "e" + axes[0] in given else None,
               dilation=per_axis("d", 1), output_padding=per_axis("op", 0), transposed="transposed" in given,
               groups=get("g", 1), bias="bias" in given,
               padding_mode=get("padding mode", "zeros"), dtype=get("dtype", "float64"), label=get("label", ""))
