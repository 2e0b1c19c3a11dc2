"""`lumiere-eval compare-results A.json B.json ...`: results of any lumiere-eval command in one table, only when
their protocol cards (eval/card.py) are equal; with allow_mixed the differing card fields become columns."""
from __future__ import annotations

import json
from pathlib import Path

from .card import differing, format_figure
from .errors import EvalError

SHOWN = 40      # characters of a card value in the refusal line


def load_result(path: str | Path) -> dict:
    """A result JSON with a card and figures, or an EvalError naming the file and what it expects."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such file; expected a result JSON written by lumiere-eval")
    try:
        result = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EvalError(f"{path}: not JSON ({err}); expected a result JSON written by lumiere-eval") from None
    if not isinstance(result, dict) or not isinstance(result.get("card"), dict) or not result.get("figures"):
        raise EvalError(f"{path}: no protocol card or figures; expected a result JSON written by this lumiere-eval "
                        "(fvd, is, ucf101, compare, motion)")
    return result


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def compare_results(paths: list[str], allow_mixed: bool = False) -> str:
    """The markdown table: one row per result, one column per figure (value [low, high]) and its N; refused with an
    EvalError naming the differing card fields unless allow_mixed (then those fields are columns)."""
    if len(paths) < 2:
        raise EvalError(f"compare-results needs at least 2 result files, got {len(paths)}")
    results = [load_result(p) for p in paths]
    cards = [r["card"] for r in results]
    fields = differing(cards)
    if fields and not allow_mixed:
        shown = "; ".join(f"{k}: " + " vs ".join(_short(c.get(k)) for c in cards) for k in fields)
        raise EvalError(f"the protocol cards differ in {len(fields)} field(s), so the numbers are not comparable: "
                        f"{shown}; pass --allow-mixed to show them side by side")
    names = list(dict.fromkeys(f["name"] for r in results for f in r["figures"]))
    head = ["result"] + [x for n in names for x in (n, "N")] + fields
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    for path, r in zip(paths, results):
        figs = {f["name"]: f for f in r["figures"]}
        cells = [Path(path).name]
        for n in names:
            cells += [format_figure(figs[n]), str(figs[n].get("n", ""))] if n in figs else ["-", "-"]
        cells += [_short(r["card"].get(k)) for k in fields]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    note = (f"Cards differ in: {', '.join(fields)} (shown as columns; --allow-mixed)." if fields
            else f"Protocol cards equal ({len(cards[0])} fields).")
    return "\n".join(lines) + "\n\n" + note + "\n"
