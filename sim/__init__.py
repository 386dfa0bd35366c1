"""septet's throughput model: the measured tile scaled to an LPU-like chip and to LLaMA-70B decode.

Public entry points
-------------------
``sim.report.verdict(measurements=None, model_key="llama2-70b", quality=None) -> str``
    What 3.5-bit buys over INT4 in chips, tokens/s and error; ``septet run`` prints it last.
``sim.report.write_report(out_dir, model_key, measurements=None, quality=None)``
    ``report.md``, ``report.json`` and the PNG plots (``septet report`` / ``make report``).
``sim.model.decode`` / ``sim.model.gpu_decode`` / ``sim.model.tile_scaling``
    The model itself; placement assumptions are in :mod:`sim.model`'s docstring.
``sim.audit.audit``
    Every quantitative claim of the seed paper against the project's own figure.

Constants live in ``sim/configs/*.toml`` (one file per chip and per LLM, each value with
its source); the default tile measurement is ``sim/data/measurements_g128.json`` (the verdict's pair,
groups of 128); the public decode measurements the model is calibrated on are
``sim/data/observed.toml`` (:mod:`sim.observed`, :mod:`sim.calibrate`).
"""
