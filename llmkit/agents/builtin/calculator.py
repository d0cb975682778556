"""A calculator tool: arithmetic parsed with `ast` and evaluated node by node, never `eval`.

    >>> evaluate("2 ** 10 + sqrt(16) * 3")
    1036.0
    >>> evaluate("__import__('os')")
    Traceback (most recent call last):
    ...
    llmkit.agents.errors.ToolCallError: unsupported expression: Call to '__import__' (allowed functions: ...)

Only numbers, + - * / // % **, unary +/-, parentheses, a fixed set of math functions
and constants. Exponents and factorials are bounded so `9**9**9` is an error, not a hang.
"""

from __future__ import annotations

import ast
import math
import operator

from llmkit.agents.errors import ToolCallError
from llmkit.agents.tools import tool

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
             "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
             "atan": math.atan, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
             "factorial": math.factorial, "min": min, "max": max, "gcd": math.gcd, "pow": pow}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1000
MAX_CHARS = 500


def _unsupported(what: str) -> ToolCallError:
    return ToolCallError(f"unsupported expression: {what} (allowed functions: {', '.join(sorted(FUNCTIONS))}; "
                         f"constants: {', '.join(sorted(CONSTANTS))})")


def _pow(a, b):
    if isinstance(b, (int, float)) and abs(b) > MAX_EXPONENT:
        raise ToolCallError(f"exponent {b} is too large (limit {MAX_EXPONENT})")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > 100_000:
        raise ToolCallError(f"{a} ** {b} would have more than 100000 bits")
    return pow(a, b)


def _eval(node):
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise _unsupported(f"name {node.id!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _eval(node.left), _eval(node.right)
        return _pow(a, b) if isinstance(node.op, ast.Pow) else _BIN[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = FUNCTIONS.get(node.func.id)
        if fn is None:
            raise _unsupported(f"Call to {node.func.id!r}")
        args = [_eval(a) for a in node.args]
        if fn is math.factorial and args and (not isinstance(args[0], int) or args[0] > MAX_FACTORIAL):
            raise ToolCallError(f"factorial needs an integer <= {MAX_FACTORIAL}, got {args[0]!r}")
        return fn(*args)
    raise _unsupported(type(node).__name__)


def evaluate(expression: str):
    """The value of an arithmetic expression (int when exact, else float)."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if len(text) > MAX_CHARS:
        raise ToolCallError(f"expression of {len(text)} characters is too long (limit {MAX_CHARS})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ToolCallError(f"cannot parse {expression!r}: {e.msg}") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError:
        raise ToolCallError("division by zero") from None
    except (ValueError, OverflowError, TypeError) as e:
        raise ToolCallError(f"math error: {e}") from None
    return value


def format_number(value) -> str:
    """12.0 -> '12', 0.1 + 0.2 -> '0.3': what a person would write."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return f"{value:.10g}"
    return str(value)


@tool(example={"question": "What is 12 times 12?", "arguments": {"expression": "12 * 12"}, "result": "144"})
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: numbers with + - * / // % ** and parentheses; functions sqrt, log, exp, sin, cos,
            round, abs, min, max, factorial; constants pi and e.
    """
    return format_number(evaluate(expression))
