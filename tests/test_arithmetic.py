"""``conformance.numerics.arithmetic`` measures what a backend does: backends whose arithmetic is known by construction
(``tests/mutants/_arith.py``) are each measured as what they are, and a declaration is set beside the measurement."""

from __future__ import annotations

from fractions import Fraction

import mutants._arith as A
import pytest

from conformance.numerics import arithmetic
from conformance.numerics.arithmetic import Format, known_orders, name_order, sizes_of_tree


def profile(model: type, passes=arithmetic.PASSES) -> dict[str, arithmetic.PassArithmetic]:
    backend = model()
    return {p: arithmetic.measure_pass(backend, model.dtype, p) for p in passes}


class F64(A.Model):
    name, dtype, acc, fma = "m-fp64", "float64", 53, False


class F32(A.Model):
    name = "m-fp32"


class F32NoFMA(A.Model):
    name, fma = "m-fp32-nofma", False


class F32Truncating(A.Model):
    name, mode = "m-fp32-rz", "RZ"


class F32Pairwise(A.Model):
    name, order = "m-fp32-pairwise", "pairwise"


class F32Lanes(A.Model):
    name, order, lanes = "m-fp32-lanes", "lanes", 4


class F32FlushesSubnormals(A.Model):
    name, daz, ftz = "m-fp32-dazftz", True, True


class TF32(A.Model):
    name, input_bits, declared = "m-tf32", 11, "tf32"


class Half32(A.Model):
    name, dtype = "m-fp16-acc32", "float16"


class Half16(A.Model):
    name, dtype, acc = "m-fp16-acc16", "float16", 11


class Bf16Acc32(A.Model):
    name, dtype = "m-bf16-acc32", "bfloat16"


class Bf16Acc16(A.Model):
    name, dtype, acc = "m-bf16-acc16", "bfloat16", 8


class Bf16Mid(A.Model):
    name, dtype, mid = "m-bf16-mid16", "bfloat16", True


class Bf16Blocked(A.Model):
    """float32 inside blocks of 4 terms, the blocks' partial sums added in bfloat16 (torch's native weight
    gradient, with the batch as the blocks)."""

    name, dtype, block, outer = "m-bf16-blocked", "bfloat16", 4, 8


@pytest.mark.parametrize("model, bits, fits", [
    (F64, 53, "fp64"), (F32, 24, "fp32"), (Half32, 24, "fp16-acc32"), (Half16, 11, "fp16-acc16"),
    (Bf16Acc32, 24, "bf16-acc32"), (Bf16Acc16, 8, "bf16-acc16"), (Bf16Blocked, 8, "bf16-acc16"),
], ids=lambda v: getattr(v, "name", str(v)))
def test_the_accumulator_is_measured_in_bits_and_named_by_the_profile_that_fits(model, bits, fits):
    for pass_, r in profile(model).items():
        assert not r.errors, r.errors
        assert r.acc_bits == bits, f"{model.name} {pass_}: {r.acc_bits_by_axis}"
        assert r.profile() == fits, f"{model.name} {pass_}: {r.describe()}"
        assert r.rounding == "nearest-even" and r.daz is False and r.ftz is False and r.deterministic


def test_products_rounded_before_the_sum_are_told_from_fused_ones():
    assert profile(F32, ["forward"])["forward"].products_exact is True
    assert profile(F32NoFMA, ["forward"])["forward"].products_exact is False
    assert profile(F64, ["forward"])["forward"].products_exact is False


def test_truncation_is_measured_and_costs_a_bit_of_the_bound():
    r = profile(F32Truncating, ["forward"])["forward"]
    assert r.rounding == "toward-zero" and r.acc_bits == 24
    assert r.u_acc == 2.0**-23 and r.profile() != "fp32"  # a truncated float32 sum does not meet fp32's bound


def test_subnormals_flushed_on_the_way_in_and_out():
    r = profile(F32FlushesSubnormals, ["grad_weight"])["grad_weight"]
    assert (r.daz, r.ftz) == (True, True)


def test_inputs_rounded_to_tf32_are_measured():
    r = profile(TF32, ["forward"])["forward"]
    assert r.input_bits == 11 and r.profile() == "tf32"


def test_one_intermediate_rounding_before_the_bias_is_mid16():
    r = profile(Bf16Mid, ["forward"])["forward"]
    assert r.mid is True and r.acc_bits == 24 and r.profile() == "bf16-acc32-mid16"


@pytest.mark.parametrize("model, order", [
    (F32, "sequential"), (F32Pairwise, "pairwise"), (F32Lanes, "4 interleaved lanes (k mod 4), lanes pairwise"),
    (Bf16Blocked, "blocks of 4, each sequential, blocks in sequence"),
], ids=lambda v: getattr(v, "name", str(v)))
def test_the_order_of_accumulation_is_revealed(model, order):
    r = profile(model, ["grad_bias"])["grad_bias"]
    assert r.order["batch"] == order, r.order


def test_every_known_order_is_told_from_every_other():
    """The subtree sizes identify a summation tree: no two named orders of 16 terms share them (where two names
    describe the same tree, as 2 lanes and blocks of 8 pairwise, the first name is kept)."""
    trees = known_orders(16)
    for name, tree in trees.items():
        got = name_order(16, sizes_of_tree(tree, 16))
        assert sizes_of_tree(trees[got], 16) == sizes_of_tree(tree, 16), (name, got)


def test_an_unknown_order_is_shown_as_its_tree():
    tree = ((0, 2), ((1, 3), (4, (5, (6, 7)))))
    assert name_order(8, sizes_of_tree(tree, 8)) == "other: ((0+2)+((1+3)+(4+(5+(6+7)))))"


def test_a_declaration_tighter_than_measured_is_a_finding_naming_the_profile_to_declare():
    class Claims32(Bf16Acc16):
        name, declared = "m-claims-acc32", "bf16-acc32"

    backend = Claims32()
    c = arithmetic.compare_declared(backend.capabilities, arithmetic.measure_pass(backend, "bfloat16", "grad_weight"))
    assert not c.ok and c.measured == "bf16-acc16"
    assert "declared bf16-acc32" in c.message() and "{'bfloat16:grad_weight': 'bf16-acc16'}" in c.message()


def test_a_declaration_looser_than_measured_is_lost_power():
    class ClaimsAcc16(Bf16Acc32):
        name, declared = "m-claims-acc16", "bf16-acc16"

    backend = ClaimsAcc16()
    c = arithmetic.compare_declared(backend.capabilities, arithmetic.measure_pass(backend, "bfloat16", "forward"))
    assert c.ok and c.looser and "lose power" in c.message()


def test_the_precision_line_declares_what_was_measured():
    results = list(profile(Bf16Acc16).values()) + list(profile(F32).values())
    assert arithmetic.precision_line(results) == "precision={'bfloat16': 'bf16-acc16'}"


def test_formats_know_their_numbers():
    bf = Format.of("bfloat16")
    assert (bf.p, bf.min_exp, bf.tiny) == (8, -126, Fraction(1, 2**133))
    assert Format.of("float16").representable(Fraction(3, 2**24)) and not Format.of("float16").representable(
        Fraction(1, 2**25))


@pytest.mark.slow
def test_one_wrong_declaration_is_one_finding_in_the_gate(tmp_path):
    """The gate on a backend that declares ``bf16-acc32`` but sums in bfloat16: ``arithmetic`` is the only failing
    check, and the failures of the tiers that exceed the declared bounds are attributed to it, not listed."""
    import mutants
    from mutants.precision_bugs import UndeclaredBfloat16Accumulation as cls

    run = mutants.run_gate(str(mutants.HERE / "precision_bugs.py"), cls, tmp_path)
    assert run.returncode == 1 and run.failing_checks == ["arithmetic"], run.output[-2000:]
    assert {"grad_weight", "corpus"} <= set(run.summary["explained"]), run.summary
    finding = [r for r in run.bad_rows() if r.tier == "arithmetic" and r.check == "grad_weight"]
    assert finding and "declare precision={'bfloat16:grad_weight': 'bf16-acc16'}" in finding[0].message
