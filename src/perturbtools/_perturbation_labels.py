"""The perturbation-label grammar (``"A"``, ``"A+B"``, GEARS-style ``"A+ctrl"``): strings in, genes out.

Ground floor: imports nothing of the package but its keys, so every floor above can parse labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._keys import CONTROL, DELIMITER

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_CONTROL_TOKENS = ("ctrl", "control", "non-targeting", "NT", "")


def parse_perturbation(
    label: str, *, control: str = CONTROL, delimiter: str = DELIMITER, control_tokens: Iterable[str] = _CONTROL_TOKENS
) -> tuple[str, ...]:
    """Target genes of one perturbation label.

    ``"A+B"`` gives ``("A", "B")``; ``"A+ctrl"`` and ``"ctrl+A"`` give ``("A",)``; the control gives ``()``.

    Parameters
    ----------
    label
        Perturbation label.
    control
        Label of control cells.
    delimiter
        Separator between genes of a combination.
    control_tokens
        Parts that stand for "no gene" in GEARS-style labels.

    Returns
    -------
    Target genes in the order written.
    """
    label = str(label)
    if label == control:
        return ()
    tokens = {control, *control_tokens}
    return tuple(part for part in label.split(delimiter) if part.strip() not in tokens)


def canonical_label(genes: Sequence[str], *, control: str = CONTROL, delimiter: str = DELIMITER) -> str:
    """Canonical label of a gene set: sorted genes joined by ``delimiter``; the control for no genes."""
    return delimiter.join(sorted(genes)) if len(genes) else control


def perturbation_genes(
    perturbations: Iterable[str], *, control: str = CONTROL, delimiter: str = DELIMITER
) -> dict[str, tuple[str, ...]]:
    """Map each perturbation label to its target genes."""
    return {p: parse_perturbation(p, control=control, delimiter=delimiter) for p in perturbations}
