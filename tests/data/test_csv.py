"""The strict CSV reader (data/csv.py): numbers and text columns, and errors that name the file,
the line and the column."""

import numpy as np
import pytest

from rnnkit.data import DataFormatError, read_table


def test_read_table_parses_numbers_and_text(tmp_path):
    (tmp_path / "t.csv").write_text('"Date Time","a (x)",b\nd1,1.5,-2e3\n\nd2, 3 ,4\n')
    table = read_table(tmp_path / "t.csv", text=("Date Time",))
    assert table.columns == ["a (x)", "b"]
    np.testing.assert_array_equal(table.values, [[1.5, -2000.0], [3.0, 4.0]])
    assert table.text == {"Date Time": ["d1", "d2"]} and table.lines.tolist() == [2, 4]


@pytest.mark.parametrize("content, message", [
    ("", "the file is empty"),
    ("a,b\n", "no data rows after the header"),
    ("a,b\n1,2\n3,abc\n", "line 3, column 'b': expected a number, got 'abc'"),
    ("a,b\n1,\n", "line 2, column 'b': expected a number, got an empty cell"),
    ("a,b\n1,2\nnan,2\n", "line 3, column 'a': expected a finite number, got 'nan'"),
    ("a,b\n1,-inf\n", "line 2, column 'b': expected a finite number, got '-inf'"),
    ("a,b\n1,2\n3\n", "line 3, column 'b': missing cell"),
    ("a,c\n1,2\n", "line 1 \\(header\\): missing column 'b'"),
])
def test_read_table_errors_name_file_line_and_column(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataFormatError, match=f"bad.csv: {message}"):
        read_table(tmp_path / "bad.csv", numeric=["a", "b"])
