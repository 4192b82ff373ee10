"""The convolution problem: geometry and dtype of one ``conv2d`` call, its derived shapes, one validator.

Semantics are ``torch.nn.Conv2d``: cross-correlation, NCHW input ``(N, C_in, H, W)``,
weight ``(C_out, C_in / groups, kh, kw)``, optional bias ``(C_out,)``, padding with ``padding_mode`` zeros, reflect,
replicate or circular (``torch.nn.Conv2d(padding_mode=...)``). ``padding`` is ``(h, w)`` applied on both sides, as
torch has it; ONNX-style asymmetric padding gives the far sides in ``padding_end`` (bottom, right), and the strings
``"same"`` and ``"valid"`` are resolved as torch resolves them (for ``"same"`` the odd extra row/column goes to the
bottom/right). Along each axis the output size is::

    out = (in + pad_begin + pad_end - dilation*(k - 1) - 1) // stride + 1

Every rule lives in one function below, so an invalid problem raises one ``InvalidProblem``
whose message names the values and the rule (``groups=3 must divide c_in=4``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.errors import InvalidProblem

Pair = tuple[int, int]

#: dtypes the problem model knows. Which of them a backend supports is its own declaration.
DTYPES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")


def numpy_dtype(name: str) -> Any:
    """numpy's dtype for one of ``DTYPES``; bfloat16 comes from the ``ml_dtypes`` package."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _pair(name: str, value: Any) -> Pair:
    if isinstance(value, bool):
        raise InvalidProblem(f"{name}={value!r}, but it must be an int or a pair of ints")
    if isinstance(value, int):
        return (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InvalidProblem(f"{name}={value!r}, but it must be an int or a pair of ints") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
        raise InvalidProblem(f"{name}={value!r}, but it must be an int or a pair of ints")
    return (int(a), int(b))


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidProblem(f"{name}={v!r}, but it must be an int")
        if v < 1:
            raise InvalidProblem(f"{name}={v}, but it must be at least 1")


def _check_pair_at_least(name: str, pair: Pair, minimum: int) -> None:
    for axis, v in zip("hw", pair):
        if v < minimum:
            raise InvalidProblem(f"{name}={pair} ({axis}={v}), but it must be at least {minimum}")


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
            f"dilation*(k{axis}-1)+1={span} exceeds padded {'height' if axis == 'h' else 'width'} "
            f"{what} ({axis}={size}, k{axis}={k}, {pads}, dilation={dil})"
        )


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check_padding_mode(mode: str, size: Pair, begin: Pair, end: Pair) -> None:
    """torch's rules: reflect needs every pad < the input size, circular every pad <= it (one wrap at most)."""
    if mode not in PADDING_MODES:
        raise InvalidProblem(f"padding_mode={mode!r}, but it must be one of {', '.join(PADDING_MODES)}")
    for axis, n, pads in (("h", size[0], (begin[0], end[0])), ("w", size[1], (begin[1], end[1]))):
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
    """One ``conv2d`` problem. Pairs are ``(h, w)``; an int is accepted for both axes.

    >>> p = ConvProblem(batch=1, c_in=1, c_out=1, h=6, w=5, kh=3, kw=3)
    >>> p.output_shape
    (1, 1, 4, 3)
    """

    batch: int
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = False
    dtype: str = "float64"
    padding_mode: str = "zeros"
    #: (bottom, right) padding where it differs from ``padding`` (top, left); None: symmetric, as torch
    padding_end: Pair | None = None
    #: free-form label (a network layer's name, a tier); not part of the geometry
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("stride", "dilation"):
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        if isinstance(self.padding, str):
            self._resolve_padding_string()
        elif isinstance(self.padding, (tuple, list)) and len(self.padding) == 4:
            top, bottom, left, right = self.padding  # ONNX's order would be (top, left, bottom, right): see docs
            object.__setattr__(self, "padding", _pair("padding", (top, left)))
            object.__setattr__(self, "padding_end", _pair("padding_end", (bottom, right)))
        else:
            object.__setattr__(self, "padding", _pair("padding", self.padding))
        if self.padding_end is not None:
            end = _pair("padding_end", self.padding_end)
            object.__setattr__(self, "padding_end", None if end == self.padding else end)
        numpy_type = isinstance(self.dtype, type) and issubclass(self.dtype, np.generic)
        if isinstance(self.dtype, np.dtype) or numpy_type:  # equal to its name, but not the same: store the name
            object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if not isinstance(self.bias, bool):
            raise InvalidProblem(f"bias={self.bias!r}, but it must be True or False")
        self.validate()

    def _resolve_padding_string(self) -> None:
        """``"valid"``: no padding. ``"same"``: out = in, total = dilation*(k-1) split as torch splits it."""
        if self.padding == "valid":
            object.__setattr__(self, "padding", (0, 0))
            return
        if self.padding != "same":
            raise InvalidProblem(f"padding={self.padding!r}, but a string padding must be 'same' or 'valid'")
        if self.stride != (1, 1):
            raise InvalidProblem(f"padding='same' with stride={self.stride}, but 'same' is not supported for "
                                 "strided convolutions (as in torch)")
        totals = [d * (k - 1) for d, k in zip(self.dilation, (self.kh, self.kw))]
        begin = tuple(t // 2 for t in totals)
        end = tuple(t - t // 2 for t in totals)
        object.__setattr__(self, "padding", begin)
        object.__setattr__(self, "padding_end", end)

    def validate(self) -> None:
        """Raise ``InvalidProblem`` naming the first broken rule."""
        _check_positive(batch=self.batch, c_in=self.c_in, c_out=self.c_out, h=self.h, w=self.w,
                        kh=self.kh, kw=self.kw, groups=self.groups)
        _check_pair_at_least("stride", self.stride, 1)
        _check_pair_at_least("dilation", self.dilation, 1)
        _check_pair_at_least("padding", self.padding, 0)
        _check_groups(self.groups, self.c_in, self.c_out)
        if self.padding_end is not None:
            _check_pair_at_least("padding_end", self.padding_end, 0)
        end = self.pad_end
        _check_kernel_fits("h", self.h, self.kh, self.padding[0], self.dilation[0], end[0])
        _check_kernel_fits("w", self.w, self.kw, self.padding[1], self.dilation[1], end[1])
        _check_padding_mode(self.padding_mode, (self.h, self.w), self.padding, end)
        _check_dtype(self.dtype)

    # -- derived shapes ---------------------------------------------------------------
    @property
    def pad_end(self) -> Pair:
        """(bottom, right) padding: ``padding_end`` where given, else ``padding``."""
        return self.padding if self.padding_end is None else self.padding_end

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)."""
        return (self.padding[0], self.pad_end[0], self.padding[1], self.pad_end[1])

    @property
    def asymmetric(self) -> bool:
        return self.padding_end is not None

    @property
    def out_h(self) -> int:
        return (self.h + self.padding[0] + self.pad_end[0] - self.dilation[0] * (self.kh - 1) - 1) \
            // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        return (self.w + self.padding[1] + self.pad_end[1] - self.dilation[1] * (self.kw - 1) - 1) \
            // self.stride[1] + 1

    @property
    def np_dtype(self) -> Any:
        """The numpy dtype of the operands (bfloat16 is ml_dtypes' extension type)."""
        return numpy_dtype(self.dtype)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kh, self.kw)

    @property
    def bias_shape(self) -> tuple[int]:
        return (self.c_out,)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_out, self.out_h, self.out_w)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass (each backward pass has the same count)."""
        return self.batch * self.c_out * self.out_h * self.out_w * (self.c_in // self.groups) * self.kh * self.kw

    @property
    def max_elements(self) -> int:
        """The largest operand, in elements."""
        return max(self.batch * self.c_in * self.h * self.w, self.batch * self.c_out * self.out_h * self.out_w,
                   self.c_out * (self.c_in // self.groups) * self.kh * self.kw)

    # -- (de)serialisation: records, reproductions --------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # the fields are ints, strs and tuples of ints: a shallow read (dataclasses.asdict deep-copies every value,
        # which costs more than a whole small example's comparison)
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("stride", "padding", "dilation", "padding_end"):
            d[k] = None if d[k] is None else list(d[k])
        for k, default in (("label", ""), ("padding_mode", "zeros"), ("padding_end", None)):
            if d[k] == default:
                del d[k]  # records and reproductions of plain problems stay as they were
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
            key        := mb ic oc  ih iw  kh kw  sh sw  ph pw  eh ew  dh dw  g
            flag       := bias | zeros | reflect | replicate | circular | float64 | float32 | float16 | bfloat16

        ``mb`` is the batch, ``ic``/``oc`` the input/output channels, then per spatial axis (``h``, ``w``) the
        input size ``i``, kernel ``k``, stride ``s``, begin (top/left) padding ``p``, end (bottom/right) padding
        ``e`` where it differs from the begin padding (ONNX-style asymmetric), dilation ``d`` (torch's: 1 is none;
        benchdnn's 0 is an error here), then ``g`` the groups. ``bias`` adds a bias; the padding mode and the dtype
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
        defaults = {"label": "", "padding_mode": "zeros", "padding_end": None}
        shown = [f.name for f in dataclasses.fields(self)
                 if f.name not in defaults or getattr(self, f.name) != defaults[f.name]]
        return "ConvProblem(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in shown) + ")"


# -- the descriptor: str(problem) and ConvProblem.parse -------------------------------------------------------------
#: the spatial axes a descriptor names, outermost first (3-d problems will add "d" in front; 1-d ones have only "w")
AXES = ("h", "w")
#: per-axis key prefixes in canonical order, what each is, and its default (None: required, or for "e" the begin
#: padding); a key is the prefix and the axis: ``ih``, ``kw``, ``eh``
AXIS_KEYS: tuple[tuple[str, str, int | None], ...] = (
    ("i", "input size", None), ("k", "kernel", None), ("s", "stride", 1), ("p", "padding (begin)", 0),
    ("e", "padding (end)", None), ("d", "dilation", 1))
#: the flag words, by what they set (each at most once)
FLAGS: dict[str, tuple[str, ...]] = {"bias": ("bias",), "padding mode": PADDING_MODES, "dtype": DTYPES}
_KEYS = ("mb", "ic", "oc", *(f + a for f, _, _ in AXIS_KEYS for a in AXES), "g")
_REQUIRED = ("ic", "oc", "ih", "kh")
_FLAG_SLOT = {word: slot for slot, words in FLAGS.items() for word in words}
#: the grammar, as parse errors show it (canonical order; keys may come in any order)
GRAMMAR = ("[mb<n>]ic<n>oc<n>"
           + "".join(f"{f}h<n>[{f}w<n>]" if f + "h" in _REQUIRED else f"[{f}h<n>[{f}w<n>]]" for f, _, _ in AXIS_KEYS)
           + "[g<n>][_bias][_" + "|_".join(PADDING_MODES) + "][_" + "|_".join(DTYPES) + '][_n"label"]')
_EXAMPLE = 'mb2ic3oc8ih9iw9kh3kw3sh2sw2ph1pw1_bias_float32_n"conv1"'
#: a word (lazy, so that "biasn\"x\"" ends before the label) and its integer
_WORD = re.compile(r'([a-z]+?)(?=n"|[^a-z]|$)([0-9]*)')


def _format(p: ConvProblem) -> str:
    per_axis = {"i": (p.h, p.w), "k": (p.kh, p.kw), "s": p.stride, "p": p.padding, "e": p.padding_end,
                "d": p.dilation}
    out = [f"mb{p.batch}ic{p.c_in}oc{p.c_out}"]
    for prefix, _, default in AXIS_KEYS:
        values = per_axis[prefix]
        # (the end padding is set only where it differs from the begin padding: then it is written)
        if values is not None and (default is None or any(v != default for v in values)):
            out.append("".join(f"{prefix}{a}{v}" for a, v in zip(AXES, values)))
    if p.groups != 1:
        out.append(f"g{p.groups}")
    flags = (["bias"] if p.bias else []) + ([p.padding_mode] if p.padding_mode != "zeros" else []) + [p.dtype]
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
    missing = [k for k in _REQUIRED if k not in given]
    if missing:
        raise _error(text, f"missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for prefix, _, _ in AXIS_KEYS:
        outer, inner = prefix + AXES[0], prefix + AXES[1]
        if inner in given and outer not in given:
            pos, token, _ = given[inner]
            raise _error(text, f"{token!r} at position {pos} without {outer}: a w key needs its h key (descriptors "
                               "with w keys only are kept for 1-d problems)", pos)

    def get(key: str, default: Any) -> Any:
        return given[key][2] if key in given else default

    def pair(prefix: str, default: int) -> Pair:
        outer = get(prefix + AXES[0], default)
        return (outer, get(prefix + AXES[1], outer))

    (h, w), (kh, kw) = pair("i", 0), pair("k", 0)  # (required: never the default)
    return cls(batch=get("mb", 1), c_in=get("ic", 0), c_out=get("oc", 0), h=h, w=w, kh=kh, kw=kw,
               stride=pair("s", 1), padding=pair("p", 0), padding_end=pair("e", 0) if "eh" in given else None,
               dilation=pair("d", 1), groups=get("g", 1), bias="bias" in given,
               padding_mode=get("padding mode", "zeros"), dtype=get("dtype", "float64"), label=get("label", ""))
