"""Quick bounded formal checks (SymbiYosys): each proof at a small depth, and its broken variant must fail.

``make formal`` runs the same harnesses deeper, with k-induction where listed and every cover.
"""

import pytest

from formal.flow import run, tools_available
from formal.run import PROOFS, make_harness

QUICK = [p for p in PROOFS if p.quick_depth]

# The first YoWASP run on a machine compiles Yosys' WebAssembly (minutes on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(900)


def test_formal_tools_are_installed():
    assert tools_available() == []


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_bounded_proof_holds(proof, tmp_path):
    harness = make_harness(proof.name)
    result = run(harness, harness.ports, f"{proof.name}-bmc", mode="bmc", depth=proof.quick_depth, workdir=tmp_path,
                 timeout=600)
    assert result.status == "PASS", result.summary


@pytest.mark.parametrize("proof", QUICK, ids=[p.name for p in QUICK])
def test_broken_variant_fails_the_proof(proof, tmp_path):
    harness = make_harness(proof.name, broken=True)
    result = run(harness, harness.ports, f"{proof.name}-broken", mode="bmc", depth=proof.broken_depth,
                 workdir=tmp_path, timeout=600)
    assert result.status == "FAIL", f"the broken {proof.name} was not caught:\n{result.summary}"
    assert "failed assertion" in result.summary


def test_unknown_proof_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown proof 'nope'; choose from"):
        make_harness("nope")
