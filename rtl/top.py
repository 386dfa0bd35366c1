"""The Verilog top ``septet_tile``: AXI-Stream ports around :class:`~rtl.tile.SeptetTile`, and its generator.

Python API for the testbench and the CLI::

    from rtl.top import generate_verilog
    verilog_path, json_path = generate_verilog("build/verilog", fmt="4+3", lanes=16, bus_width=64)

The JSON beside the Verilog holds the build parameters, the port map, the record
widths and the constants of the expected-cycle formula (see ``rtl/TILE.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.format import REQUANT_MULT_BITS, REQUANT_SHIFT_BITS, padded_width
from rtl.layouts import ACT_PAIR_BITS, requant_layout
from rtl.params import TileParams
from rtl.tile import SeptetTile

__all__ = ["TOP_NAME", "SeptetTop", "axis_signature", "port_map", "build_info", "generate_verilog"]

#: Name of the generated Verilog module.
TOP_NAME = "septet_tile"



def axis_signature(data_width: int) -> wiring.Signature:
    """An AXI-Stream source: ``tdata``, ``tvalid``, ``tlast`` out, ``tready`` in."""
    return wiring.Signature({
        "tdata": Out(data_width),
        "tvalid": Out(1),
        "tready": In(1),
        "tlast": Out(1),
    })


class SeptetTop(wiring.Component):
    """The tile with AXI-Stream ports (Amaranth names them ``s_axis_weights__tdata`` etc.).

    tdata widths are rounded up to whole bytes; the unused top bits of inputs are
    ignored, those of outputs driven 0.  ``s_axis_params`` exists only with ``requant``.
    The tlast of ``s_axis_params`` carries no information (one beat per block) and is
    ignored.

    Parameters
    ----------
    params : TileParams
        The build parameters (validated).
    """

    def __init__(self, *, params: TileParams):
        self.params = p = params
        members = {
            "s_axis_weights": In(axis_signature(padded_width(p.bus_width))),
            "s_axis_act": In(axis_signature(padded_width(ACT_PAIR_BITS))),
            "m_axis_result": Out(axis_signature(padded_width(p.lanes * p.out_bits))),
        }
        if p.requant:
            members["s_axis_params"] = In(axis_signature(padded_width(p.lanes * requant_layout().size)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.tile = tile = SeptetTile(params=p)

        def sink(axis, port, fields):
            m.d.comb += [port.valid.eq(axis.tvalid), axis.tready.eq(port.ready)]
            m.d.comb += [getattr(port.payload, name).eq(value) for name, value in fields.items()]

        sink(self.s_axis_weights, tile.weights,
             {"data": self.s_axis_weights.tdata[:p.bus_width], "last": self.s_axis_weights.tlast})
        act = self.s_axis_act.tdata
        half = ACT_PAIR_BITS // 2
        sink(self.s_axis_act, tile.act,
             {"even": act[:half], "odd": act[half:ACT_PAIR_BITS], "last": self.s_axis_act.tlast})
        if p.requant:
            m.d.comb += [
                tile.params_in.valid.eq(self.s_axis_params.tvalid),
                self.s_axis_params.tready.eq(tile.params_in.ready),
                tile.params_in.payload.eq(self.s_axis_params.tdata[:p.lanes * requant_layout().size]),
            ]
        m.d.comb += [
            self.m_axis_result.tvalid.eq(tile.result.valid),
            tile.result.ready.eq(self.m_axis_result.tready),
            self.m_axis_result.tdata.eq(tile.result.payload.data.as_value()),
            self.m_axis_result.tlast.eq(tile.result.payload.last),
        ]
        return m


def port_map(p: TileParams) -> list:
    """Every port of ``septet_tile``: name, direction, width (real and padded), meaning."""
    ports = [
        ("clk", "in", 1, 1, "clock"),
        ("rst", "in", 1, 1, "synchronous reset, active high: returns the tile to idle mid-GEMV"),
    ]

    def axis(name, direction, width, meaning, last):
        back = "out" if direction == "in" else "in"
        ports.extend([
            (f"{name}__tdata", direction, width, padded_width(width), meaning),
            (f"{name}__tvalid", direction, 1, 1, "AXI-Stream valid"),
            (f"{name}__tready", back, 1, 1, "AXI-Stream ready"),
            (f"{name}__tlast", direction, 1, 1, last),
        ])

    axis("s_axis_weights", "in", p.bus_width,
         "packed stream bits [w*W, (w+1)*W) of the GEMV (golden/FORMAT.md section 4), the last word zero-filled",
         "on the GEMV's final word")
    axis("s_axis_act", "in", ACT_PAIR_BITS,
         "activation pair a[2i] | a[2i+1] << 8, INT8 two's complement, re-sent for each column block",
         "on the final pair of each column block")
    if p.requant:
        axis("s_axis_params", "in", p.lanes * requant_layout().size,
             f"one beat per block: lane l at bits [l*22, (l+1)*22) = M ({REQUANT_MULT_BITS} bits) | "
             f"shift << {REQUANT_MULT_BITS} ({REQUANT_SHIFT_BITS} bits)",
             "ignored")
    axis("m_axis_result", "out", p.lanes * p.out_bits,
         f"one beat per block: lane l at bits [l*{p.out_bits}, (l+1)*{p.out_bits}), two's complement "
         + ("INT8 requantized result" if p.requant else "exact integer result y of golden.oracle.gemv_int"),
         "on the GEMV's final block")
    return [{"name": n, "direction": d, "width": w, "padded_width": pw, "meaning": text}
            for n, d, w, pw, text in ports]


def build_info(p: TileParams) -> dict:
    """The JSON record written beside the Verilog."""
    return {
        "top": TOP_NAME,
        "params": p.as_dict(),
        "records": {
            "header_bits": p.header_bits,
            "beat_bits": p.beat_bits,
            "header_lane_bits": p.header_lane_bits,
            "pair_bits": p.pair_bits,
        },
        "ports": port_map(p),
        "cycles": {
            "formula": "ceil(total_stream_bits / bus_width) + fixed_latency  (bus-bound; see rtl/TILE.md)",
            "fixed_latency": p.fixed_latency,
            "lanes_bound_formula": ("n_blocks * (n_groups * len(header_chunks) + K_pad/2)"
                                    " + ceil(header_chunks[0] / bus_width) - 1 + fixed_latency"),
            "header_chunks": list(p.header_chunks),
            "gearbox_capacity_bits": p.gearbox_capacity,
            "output_queue_depth": p.output_queue_depth,
            "min_block_bits_for_end_detection": p.bus_width,
        },
    }


def generate_verilog(out_dir, **params) -> tuple:
    """Write ``septet_tile.v`` and ``septet_tile.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing.
    **params
        Keyword-only build parameters of :class:`~rtl.params.TileParams` (``fmt``,
        ``arithmetic``, ``lanes``, ``bus_width``, ``group_size``, ``acc_width``, ``max_k``,
        ``requant``).

    Returns
    -------
    (verilog_path, json_path) : tuple of Path
    """
    top = SeptetTop(params=TileParams(**params))     # validate before creating the elaboratable
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verilog_path = out / f"{TOP_NAME}.v"
    json_path = out / f"{TOP_NAME}.json"
    verilog_path.write_text(text)
    json_path.write_text(json.dumps(build_info(top.params), indent=2) + "\n")
    return verilog_path, json_path
