"""Public decode measurements (``sim/data/observed.toml``): loaded, checked, one :class:`Observation` per row.

The file's schema is documented at its top. Every row must name its source,
date, hardware and count, model, precision, context, batch and what was timed;
a row that misses one, or names a chip or model config that does not exist, is
rejected with the series and row in the message.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Observation", "load_observations", "OBSERVED_DEFAULT", "PRECISIONS", "TIMED"]

OBSERVED_DEFAULT = Path(__file__).with_name("data") / "observed.toml"

#: Precisions a row may name, and the weight-format label the model uses for each.
PRECISIONS = {"fp16": "fp16", "q4_0": "q4_0", "q8_0": "q8_0", "q4_k_m": None, "int8": "8+8"}
TIMED = ("between_tokens", "including_first_token")
_SERIES_KEYS = ("id", "source", "url", "date", "software", "timed", "batch", "context", "calibration", "columns",
                "rows")
_ROW_KEYS = ("hardware", "count", "model", "precision", "tokens_per_s", "role")
_OPTIONAL_ROW_KEYS = ("context", "first_token_s", "output_tokens", "batch")


@dataclass(frozen=True)
class Observation:
    """One published decode figure and everything needed to predict it."""

    id: str                      # "<series id>#<row number>", stable while the file is only appended to
    series: str
    source: str
    url: str
    date: str
    software: str
    calibration: str
    hardware: str
    count: int                   # 0: not published (the model maps onto the fewest chips that hold the model)
    model: str
    precision: str
    tokens_per_s: float
    role: str                    # "fit" or "holdout"
    timed: str
    batch: int
    context: int
    context_note: str
    first_token_s: "float | None" = None
    output_tokens: "int | None" = None

    @property
    def token_time_s(self) -> float:
        """Measured time between tokens; for figures that include the first token, the first token is taken out."""
        if self.timed == "between_tokens":
            return 1.0 / self.tokens_per_s
        return (self.output_tokens / self.tokens_per_s - self.first_token_s) / self.output_tokens

    def figure_from_token_time(self, t_token_s: float) -> float:
        """The published figure a predicted time between tokens implies (same definition as the measurement)."""
        if self.timed == "between_tokens":
            return 1.0 / t_token_s
        return self.output_tokens / (self.first_token_s + self.output_tokens * t_token_s)


def _fail(path, where, msg):
    raise ValueError(f"{path}: {where}: {msg}")


def load_observations(path=None) -> "tuple[list[Observation], dict]":
    """``(observations, q4_k_m_file_gib)`` from an observed-measurements TOML (default: the committed one)."""
    from sim.config import available

    path = Path(path) if path is not None else OBSERVED_DEFAULT
    if not path.exists():
        raise ValueError(f"observations file {str(path)!r} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    if doc.get("schema") != "septet.observed/1":
        _fail(path, "top", f"schema must be \"septet.observed/1\", got {doc.get('schema')!r}")
    chips, models = set(available("chip")), set(available("model"))
    file_gib = {}
    for k, entry in doc.get("q4_k_m_file_gib", {}).items():
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], (int, float))
                and isinstance(entry[1], str) and entry[1].strip()):
            _fail(path, f"q4_k_m_file_gib.{k}", f"must be [GiB, \"source\"], got {entry!r}")
        file_gib[k] = float(entry[0])
    out, ids = [], set()
    for si, series in enumerate(doc.get("series", [])):
        sid = series.get("id", f"series {si + 1}")
        for k in _SERIES_KEYS:
            if k not in series:
                _fail(path, f"series {sid!r}", f"missing {k}")
        if sid in ids:
            _fail(path, f"series {sid!r}", "id used twice")
        ids.add(sid)
        if series["timed"] not in TIMED:
            _fail(path, f"series {sid!r}", f"timed must be one of {', '.join(TIMED)}, got {series['timed']!r}")
        cols = series["columns"]
        missing = [k for k in _ROW_KEYS if k not in cols]
        extra = [k for k in cols if k not in _ROW_KEYS + _OPTIONAL_ROW_KEYS]
        if missing or extra:
            _fail(path, f"series {sid!r} columns", f"missing {missing}, unknown {extra}; columns are "
                                                  f"{', '.join(_ROW_KEYS + _OPTIONAL_ROW_KEYS)}")
        for ri, row in enumerate(series["rows"]):
            where = f"series {sid!r} row {ri + 1}"
            if not isinstance(row, list) or len(row) != len(cols):
                _fail(path, where, f"must have {len(cols)} values ({', '.join(cols)}), got {row!r}")
            r = dict(zip(cols, row))
            rec = {k: r.get(k, series.get(k)) for k in ("context", "batch", "first_token_s", "output_tokens")}
            if r["hardware"] not in chips:
                _fail(path, where, f"hardware {r['hardware']!r} is not a chip config ({', '.join(sorted(chips))})")
            if r["model"] not in models:
                _fail(path, where, f"model {r['model']!r} is not a model config ({', '.join(sorted(models))})")
            if r["precision"] not in PRECISIONS:
                _fail(path, where, f"precision must be one of {', '.join(PRECISIONS)}, got {r['precision']!r}")
            if r["precision"] == "q4_k_m" and r["model"] not in file_gib:
                _fail(path, where, f"q4_k_m needs the file size of {r['model']} in [q4_k_m_file_gib]")
            if r["role"] not in ("fit", "holdout"):
                _fail(path, where, f"role must be 'fit' or 'holdout', got {r['role']!r}")
            for k, low in (("count", 0), ("batch", 1), ("context", 0)):
                v = r.get(k, rec.get(k))
                if isinstance(v, bool) or not isinstance(v, int) or v < low:
                    _fail(path, where, f"{k} must be an integer >= {low}, got {v!r}")
            tps = r["tokens_per_s"]
            if isinstance(tps, bool) or not isinstance(tps, (int, float)) or not tps > 0:
                _fail(path, where, f"tokens_per_s must be a number > 0, got {tps!r}")
            if series["timed"] == "including_first_token" and (rec["first_token_s"] is None
                                                                 or rec["output_tokens"] is None):
                _fail(path, where, "a figure including the first token needs first_token_s and output_tokens")
            out.append(Observation(
                id=f"{sid}#{ri + 1}", series=sid, source=series["source"], url=series["url"],
                date=str(series["date"]), software=series["software"], calibration=series["calibration"],
                hardware=r["hardware"], count=r["count"], model=r["model"], precision=r["precision"],
                tokens_per_s=float(tps), role=r["role"], timed=series["timed"], batch=rec["batch"],
                context=rec["context"], context_note=series.get("context_note", ""),
                first_token_s=rec["first_token_s"], output_tokens=rec["output_tokens"]))
    if not out:
        raise ValueError(f"{path}: no observations")
    return out, file_gib
