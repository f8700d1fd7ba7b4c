"""Eight float64 lanes in vector registers (one AVX-512 register, two AVX ones), for numba.

numba leaves the lane-parallel loops of ``twin_builder.mi`` scalar (LLVM cannot prove that the
lanes' state does not alias the arrays it reads), so ``Float64Lanes`` is an LLVM
``<8 x double>`` value with the handful of operations those kernels need, each a numba intrinsic
that emits one or two vector instructions per register. Values are exact: only subtraction,
absolute value, minimum, maximum and comparisons, lane by lane, as the scalar code does them.

Eight lanes, not four: the MI kernel then walks one patch against eight others at once. In
same-process runs on an AVX-512 machine (AMD Zen 5, 2 threads) that made it 1.09-1.22x faster,
and 1.02-1.06x faster when compiled for AVX2 only (``NUMBA_CPU_NAME=haswell``); sixteen lanes
were faster still with AVX-512 (1.3-1.4x at P = 256) but gained less than eight with AVX2 alone.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8
_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


class Float64Lanes(types.Type):
    """numba type of ``LANES`` float64 lanes held in vector registers."""

    def __init__(self) -> None:
        super().__init__(name="Float64Lanes")


float64_lanes = Float64Lanes()


@register_model(Float64Lanes)
class _Float64LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _lane_index(lane: int) -> ir.Constant:
    return ir.Constant(ir.IntType(32), lane)


def _build(builder, lanes) -> ir.Value:
    vector = ir.Constant(_VECTOR, ir.Undefined)
    for lane, value in enumerate(lanes):
        vector = builder.insert_element(vector, value, _lane_index(lane))
    return vector


@intrinsic
def splat(typingctx, value):
    """``value`` in every lane."""

    def codegen(context, builder, signature, args):
        return _build(builder, [args[0]] * LANES)

    return float64_lanes(types.float64), codegen


@intrinsic
def fill(typingctx, value):
    """A tuple of ``LANES`` copies of ``value`` (a scalar), to be set lane by lane with
    ``tuple_setitem`` and, for floats, turned into a vector by ``pack``."""
    # A literal (``fill(0)``) is typed as its plain type, so that lanes can be set to other values.
    result = types.UniTuple(types.unliteral(value), LANES)

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, result, [args[0]] * LANES)

    return result(value), codegen


@intrinsic
def pack(typingctx, values):
    """The ``LANES`` float64 of a tuple (from ``fill``) as lanes 0 to ``LANES - 1``."""
    if values != types.UniTuple(types.float64, LANES):
        return None

    def codegen(context, builder, signature, args):
        return _build(builder, cgutils.unpack_tuple(builder, args[0], LANES))

    return float64_lanes(values), codegen


@intrinsic
def load(typingctx, array, start):
    """``array.flat[start : start + LANES]`` of a C-contiguous float64 array (no bounds check)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), _VECTOR.as_pointer())
        return builder.load(pointer, align=8)

    return float64_lanes(array, types.intp), codegen


def _select(predicate: str):
    def build(builder, first, second):
        return builder.select(builder.fcmp_ordered(predicate, first, second), first, second)

    return build


def _binary(build, doc: str):
    @intrinsic
    def operation(typingctx, first, second):
        def codegen(context, builder, signature, args):
            return build(builder, *args)

        return float64_lanes(float64_lanes, float64_lanes), codegen

    operation.__doc__ = doc
    return operation


minimum = _binary(_select("<"), "Lane-wise minimum.")
maximum = _binary(_select(">"), "Lane-wise maximum.")
subtract = _binary(lambda builder, first, second: builder.fsub(first, second), "first - second.")


@intrinsic
def absolute(typingctx, vector):
    """Lane-wise absolute value."""

    def codegen(context, builder, signature, args):
        function_type = ir.FunctionType(_VECTOR, [_VECTOR])
        fabs = cgutils.get_or_insert_function(
            builder.module, function_type, f"llvm.fabs.v{LANES}f64"
        )
        return builder.call(fabs, [args[0]])

    return float64_lanes(float64_lanes), codegen


@intrinsic
def get_lane(typingctx, vector, index):
    """Lane ``index`` (0 to ``LANES - 1``) as a float64."""

    def codegen(context, builder, signature, args):
        return builder.extract_element(args[0], args[1])

    return types.float64(float64_lanes, types.intp), codegen


@intrinsic
def all_at_least(typingctx, value, vector):
    """Whether ``value >= vector[lane]`` in every lane."""

    def codegen(context, builder, signature, args):
        below = builder.fcmp_unordered("<", _build(builder, [args[0]] * LANES), args[1])
        any_below = builder.bitcast(below, ir.IntType(LANES))
        return builder.icmp_unsigned("==", any_below, ir.Constant(ir.IntType(LANES), 0))

    return types.boolean(types.float64, float64_lanes), codegen


@intrinsic
def repeat(typingctx, template, vector):
    """A tuple of ``len(template)`` copies of ``vector`` (the template's values are ignored)."""
    result = types.UniTuple(float64_lanes, len(template))

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, result, [args[1]] * len(template))

    return result(template, float64_lanes), codegen
