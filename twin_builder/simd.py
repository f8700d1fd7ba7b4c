"""Four float64 lanes in one AVX register, for numba kernels.

numba leaves the lane-parallel loops of ``twin_builder.mi`` scalar (LLVM cannot prove that the
lanes' state does not alias the arrays it reads), so ``Float64x4`` is an LLVM ``<4 x double>``
value with the handful of operations those kernels need, each a numba intrinsic that emits one or
two vector instructions. Values are exact: only subtraction, absolute value, minimum, maximum and
comparisons, lane by lane, as the scalar code does them.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 4
_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


class Float64x4(types.Type):
    """numba type of four float64 lanes held in one vector register."""

    def __init__(self) -> None:
        super().__init__(name="Float64x4")


float64x4 = Float64x4()


@register_model(Float64x4)
class _Float64x4Model(models.PrimitiveModel):
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
    """(value, value, value, value)."""

    def codegen(context, builder, signature, args):
        return _build(builder, [args[0]] * LANES)

    return float64x4(types.float64), codegen


@intrinsic
def pack(typingctx, first, second, third, fourth):
    """The four float64 arguments as lanes 0 to 3."""

    def codegen(context, builder, signature, args):
        return _build(builder, args)

    return float64x4(*[types.float64] * LANES), codegen


@intrinsic
def load(typingctx, array, start):
    """``array.flat[start : start + 4]`` of a C-contiguous float64 array (no bounds check)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        pointer = builder.bitcast(builder.gep(data, [args[1]]), _VECTOR.as_pointer())
        return builder.load(pointer, align=8)

    return float64x4(array, types.intp), codegen


def _select(predicate: str):
    def build(builder, first, second):
        return builder.select(builder.fcmp_ordered(predicate, first, second), first, second)

    return build


def _binary(build, doc: str):
    @intrinsic
    def operation(typingctx, first, second):
        def codegen(context, builder, signature, args):
            return build(builder, *args)

        return float64x4(float64x4, float64x4), codegen

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
        fabs = cgutils.get_or_insert_function(builder.module, function_type, "llvm.fabs.v4f64")
        return builder.call(fabs, [args[0]])

    return float64x4(float64x4), codegen


@intrinsic
def get_lane(typingctx, vector, index):
    """Lane ``index`` (0 to 3) as a float64."""

    def codegen(context, builder, signature, args):
        return builder.extract_element(args[0], args[1])

    return types.float64(float64x4, types.intp), codegen


@intrinsic
def all_at_least(typingctx, value, vector):
    """Whether ``value >= vector[lane]`` in every lane."""

    def codegen(context, builder, signature, args):
        below = builder.fcmp_unordered("<", _build(builder, [args[0]] * LANES), args[1])
        any_below = builder.bitcast(below, ir.IntType(LANES))
        return builder.icmp_unsigned("==", any_below, ir.Constant(ir.IntType(LANES), 0))

    return types.boolean(types.float64, float64x4), codegen


@intrinsic
def repeat(typingctx, template, vector):
    """A tuple of ``len(template)`` copies of ``vector`` (the template's values are ignored)."""
    result = types.UniTuple(float64x4, len(template))

    def codegen(context, builder, signature, args):
        return context.make_tuple(builder, result, [args[1]] * len(template))

    return result(template, float64x4), codegen
