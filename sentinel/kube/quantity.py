"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500M``, ``1.5Gi``, ``1e9``, ``100m``).

The grammar is the API's own (``k8s.io/apimachinery/pkg/api/resource/quantity.go``)::

    <quantity>        ::= <signedNumber><suffix>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>

Suffixes are case-sensitive as in the API: ``1k`` is 1000 and ``1K`` is an error, ``1m`` is
a thousandth and ``1M`` a million, ``1E`` is 10**18 while ``1E3`` is 1000. No spaces.
A memory limit in a Pod's JSON is always such a string; :func:`parse_bytes` rounds it up to
whole bytes as ``Quantity.Value()`` does (``100m`` of memory is 1 byte, which is what the
kubelet writes to the cgroup).

Pure: strings in, numbers out. Nothing can overflow or hang: the text is at most
:data:`MAX_TEXT` characters and the exponent is bounded before any arithmetic.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, localcontext

MAX_TEXT = 64
"""Quantities longer than this are refused before parsing."""
MAX_BYTES = 2**63 - 1
"""The largest byte count :func:`parse_bytes` returns (the state keeps 64-bit integers)."""
_MAX_EXPONENT = 100
"""|exponent| beyond this cannot be a memory size, and is refused (``1e100000``)."""

_PRECISION = 250
"""Decimal digits kept: every quantity of :data:`MAX_TEXT` characters is exact."""
_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?))"
)
_SCALE: dict[str, tuple[int, int]] = {
    # suffix: (base, power)
    "Ki": (1024, 1),
    "Mi": (1024, 2),
    "Gi": (1024, 3),
    "Ti": (1024, 4),
    "Pi": (1024, 5),
    "Ei": (1024, 6),
    "n": (10, -9),
    "u": (10, -6),
    "m": (10, -3),
    "": (10, 0),
    "k": (10, 3),
    "M": (10, 6),
    "G": (10, 9),
    "T": (10, 12),
    "P": (10, 15),
    "E": (10, 18),
}


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity; the message quotes it."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a Kubernetes quantity string, as a :class:`~decimal.Decimal`.

    ``parse_quantity("1.5Gi") == 1610612736``, ``parse_quantity("100m") == Decimal("0.1")``.
    Raises :class:`QuantityError` (a ``ValueError``) naming the text on anything else:
    empty, spaces, an unknown or wrongly cased suffix (``1K``, ``1mi``, ``1GB``), two
    numbers, an exponent beyond 100.
    """
    if not isinstance(text, str):
        raise QuantityError(f"not a quantity: {text!r} (expected a string such as '128Mi')")
    if len(text) > MAX_TEXT:
        raise QuantityError(f"not a quantity: {text[:MAX_TEXT]!r}... (too long)")
    m = _QUANTITY.fullmatch(text)
    if m is None:
        raise QuantityError(
            f"not a quantity: {text!r} (expected e.g. 128Mi, 1G, 500M, 1.5Gi, 1e9, 100m)"
        )
    exponent = 0
    if m["exp"] is not None:
        exponent = int(m["exp"][1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"not a quantity: {text!r} (exponent out of range)")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        value = Decimal(m["number"]).scaleb(exponent)
        if m["exp"] is None:
            base, power = _SCALE[m["suffix"]]
            value = value * base**power if power >= 0 else value.scaleb(power)
        return -value if m["sign"] == "-" else value


def parse_bytes(quantity: str | int) -> int:
    """Whole bytes from a memory quantity (``"128Mi"`` -> 134217728), rounded up.

    Rounds up like the API's ``Quantity.Value()``: ``"100m"`` is 1 byte, ``"1.5"`` is 2.
    An ``int`` (a number a YAML manifest gave unquoted) is taken as bytes. Raises
    :class:`QuantityError` on malformed text, a negative size or one past :data:`MAX_BYTES`.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, (str, int)):
        raise QuantityError(f"not a memory quantity: {quantity!r}")
    value = Decimal(quantity) if isinstance(quantity, int) else parse_quantity(quantity)
    if value < 0:
        raise QuantityError(f"not a memory size: {quantity!r} (negative)")
    if value > MAX_BYTES:
        raise QuantityError(f"not a memory size: {quantity!r} (larger than 8 EiB)")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return int(value.to_integral_value(rounding=ROUND_CEILING))
