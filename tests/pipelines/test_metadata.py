"""How the promotion gate reads in Dagster's metadata column."""

from pipelines.metadata import gate_markdown
from tradeloop.research.gate import GateCheck


def test_the_gate_table_has_four_narrow_columns_and_the_how_below_it() -> None:
    checks = [GateCheck(name="pbo", value=0.3, bar=0.5, passed=True, detail="CSCV over 10 trials, 8 blocks",
                        shown_bar="<= 0.5000"),
              GateCheck(name="max_drawdown", value=-0.41, bar=-0.35, passed=False, detail="worst fall from a high",
                        shown="-41.0%", shown_bar=">= -35.0%")]
    text = gate_markdown(checks).value
    table, how = text.split("\n\n", 1)
    rows = table.splitlines()
    assert rows[0] == "| check | value | bar | result |"
    assert all(row.count("|") == 5 for row in rows)  # no fifth column to squeeze the words into
    assert "| pbo | 0.3000 | <= 0.5000 | PASS |" in rows
    assert "| max_drawdown | -41.0% | >= -35.0% | **FAIL** |" in rows
    assert "- **pbo**: CSCV over 10 trials, 8 blocks" in how
    assert "- **max_drawdown**: worst fall from a high" in how
