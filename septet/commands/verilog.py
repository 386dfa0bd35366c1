"""``septet verilog``: write the tile's Verilog top and its parameter/port-map JSON."""

from rtl.params import DEFAULT_ACC_WIDTH, DEFAULT_MAX_K


def _group_size(text):
    return None if text in ("none", "column", "per-column") else int(text)


def add_tile_arguments(p, *, format_metavar="E+O",
                       format_help="slot widths E+O (4+3, 4+4, 3+3, 8+8, ...); default 4+3"):
    """The tile's build parameters, shared by ``septet verilog`` and ``septet sim``."""
    p.add_argument("--format", default="4+3", metavar=format_metavar, help=format_help)
    p.add_argument("--arithmetic", default="own", choices=("own", "shared"), help="own grids or shared grid")
    p.add_argument("--lanes", type=int, default=16, help="lanes L (columns per block); default 16")
    p.add_argument("--bus-width", type=int, default=64, help="SRAM bus width W in bits (any W >= 1); default 64")
    p.add_argument("--group-size", type=_group_size, default=None, metavar="G|none",
                   help="rows per group along K (even), or 'none' for per column (default)")
    p.add_argument("--acc-width", type=int, default=DEFAULT_ACC_WIDTH, help="wide accumulator width")
    p.add_argument("--max-k", type=int, default=DEFAULT_MAX_K, help="largest K the tile is built for")
    p.add_argument("--requant", action="store_true", help="build with INT8 requantization of the results")


def add_arguments(p):
    add_tile_arguments(p)
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall with rtl/lint_waivers.vlt")
    p.add_argument("--out", default="build/verilog", metavar="DIR", help="output directory")


def run(args):
    from rtl.top import generate_verilog

    verilog_path, json_path = generate_verilog(
        args.out, fmt=args.format, arithmetic=args.arithmetic, lanes=args.lanes, bus_width=args.bus_width,
        group_size=args.group_size, acc_width=args.acc_width, max_k=args.max_k, requant=args.requant)
    print(f"wrote {verilog_path}")
    print(f"wrote {json_path}")
    if args.lint:
        from rtl.lint import lint
        warnings = lint(verilog_path)
        for line in warnings:
            print(line)
        print(f"verilator --lint-only -Wall: {len(warnings)} warning(s) not waived")
        return 1 if warnings else 0
    return 0
