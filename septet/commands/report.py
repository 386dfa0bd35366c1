"""``septet report``: scale the measured tile to LLaMA-70B decode, audit the seed, write the report."""

import json

from sim.config import available


def add_arguments(p):
    p.add_argument("--model", default="llama2-70b", help=f"LLM config: {', '.join(available('model'))} "
                                                          f"(default llama2-70b) or a .toml path")
    p.add_argument("--measurements", metavar="F.json",
                   help="measurements from 'septet sim --json' / 'septet run' (default: the committed "
                        "sim/data/measurements_default.json)")
    p.add_argument("--quality", metavar="F.json",
                   help="quality study from 'septet quality --json' (default: sim/data/quality_smollm2.json "
                        "where it exists)")
    p.add_argument("--out", default="build/report", metavar="DIR", help="output directory (default build/report)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the summary")


def run(args):
    from sim.report import verdict, write_report

    path, data = write_report(args.out, args.model, args.measurements, args.quality)
    if args.json:
        print(json.dumps({k: v for k, v in data.items() if k != "sources"}, indent=1, default=str))
        return 0
    print(verdict(args.measurements, args.model, args.quality))
    print(f"measurements used: {data['measurements']['source']}"
          + (" (PROVISIONAL)" if data["measurements"]["provisional"] else ""))
    print(f"wrote {path} (+ report.json and plots)")
    return 0
