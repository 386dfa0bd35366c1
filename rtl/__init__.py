"""septet: rtl — the tile in Amaranth 0.5 (see ``rtl/TILE.md``).

``rtl.params.TileParams`` (build parameters), ``rtl.tile.SeptetTile`` (the tile on
Amaranth streams), ``rtl.top.generate_verilog`` (the Verilog top ``septet_tile`` and its
JSON port map), ``rtl.lint.lint`` (Verilator lint with ``rtl/lint_waivers.vlt``).
"""
