"""``septet report``: the calibrated throughput model, its error on held-out measurements, the verdict, the seed audit.

User configs (``--chip``, ``--gpu``, ``--model``) are TOML files in the schema of
``sim/configs/*.toml`` (documented in :mod:`sim.config`): every constant written
``key = [value, "source"]``. A chip file has ``name``, ``key``, ``kind`` ("sram"
for an LPU-like chip, "hbm" for a GPU-like one) and a ``[chip]`` table; a model
file has ``name``, ``key`` and a ``[shape]`` table. A missing or out-of-range
constant is an error naming it and its allowed range.
"""

import json

from sim.config import available


def add_arguments(p):
    p.add_argument("--model", default="llama2-70b", help=f"LLM config: {', '.join(available('model'))} "
                                                          f"(default llama2-70b) or a .toml path")
    p.add_argument("--chip", default="groq-tsp", metavar="C",
                   help="LPU-like (kind = \"sram\") chip config key or .toml path (default groq-tsp); "
                        "schema: see sim/configs/groq-tsp.toml and sim.config")
    p.add_argument("--gpu", default="h100-pcie", metavar="G",
                   help=f"GPU-like (kind = \"hbm\") chip config key or .toml path (default h100-pcie; shipped: "
                        f"{', '.join(k for k in available('chip') if k != 'groq-tsp')})")
    p.add_argument("--observed", metavar="O.toml",
                   help="public decode measurements to calibrate on (default sim/data/observed.toml; schema at its "
                        "top)")
    p.add_argument("--measurements", metavar="F.json",
                   help="tile measurements from 'septet sim --json' / 'septet run' (default: the committed "
                        "sim/data/measurements_g128.json)")
    p.add_argument("--quality", metavar="F.json",
                   help="quality study from 'septet quality --json' (default: sim/data/quality_smollm2.json "
                        "where it exists)")
    p.add_argument("--out", default="build/report", metavar="DIR", help="output directory (default build/report)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the summary")


def run(args):
    from sim.report import verdict, write_report

    path, data = write_report(args.out, args.model, args.measurements, args.quality, chip_key=args.chip,
                              gpu_key=args.gpu, observed=args.observed)
    if args.json:
        print(json.dumps({k: v for k, v in data.items() if k != "sources"}, indent=1, default=str))
        return 0
    print(verdict(args.measurements, args.model, args.quality, args.observed, args.chip, args.gpu))
    print(f"measurements used: {data['measurements']['source']}"
          + (" (PROVISIONAL)" if data["measurements"]["provisional"] else ""))
    print(f"wrote {path} (+ report.json and plots)")
    return 0
