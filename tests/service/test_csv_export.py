from __future__ import annotations

import io

from creditmeter.service import csv_export


def test_only_text_cells_that_start_a_formula_are_changed() -> None:
    out = io.StringIO()
    csv_export.Writer(out).writerow(
        ["=A1", "+1", "-x", "@f", "\tt", "\rr", "a=b", "", -500, 0, None]
    )
    assert out.getvalue() == "'=A1,'+1,'-x,'@f,'\tt,\"'\rr\",a=b,,-500,0,\r\n"
