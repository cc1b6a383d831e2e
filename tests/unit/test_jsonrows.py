import json

import numpy as np
import pytest

from robocurate.molmo.jsonrows import JsonRowError, decode_row, decode_rows, encode_row


def _rows(values, width=200):
    return np.stack([encode_row(v, width) for v in values])


def test_round_trip_matches_row_by_row_reference():
    values = [{"arm": [0.1 * i] * 7, "base": [], "gripper": [0.5, 0.5]} for i in range(20)]
    arr = _rows(values)
    assert decode_rows(arr) == values
    assert [decode_row(r) for r in arr] == values
    assert arr[0].tobytes().rstrip(b"\0") == json.dumps(
        values[0], sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("bad", [b'{"arm":[1,2', b"\xff\xfe{}", b"", b'{"a":1},{"b":2}', b"not json"])
def test_malformed_row_is_reported_with_its_index(bad):
    arr = _rows([{"a": 1}] * 5)
    arr[3] = 0
    arr[3, : len(bad)] = np.frombuffer(bad, dtype=np.uint8)
    with pytest.raises(JsonRowError) as err:
        decode_rows(arr)
    assert err.value.row == 3


def test_split_object_across_rows_is_not_accepted_by_the_fast_path():
    # Two broken halves that would join into one valid object.
    arr = np.zeros((2, 20), dtype=np.uint8)
    for i, text in enumerate([b'{"a":[1', b'2]}']):
        arr[i, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    with pytest.raises(JsonRowError) as err:
        decode_rows(arr)
    assert err.value.row == 0


def test_non_object_rows_decode_like_the_reference():
    arr = _rows([[1, 2], {"a": 1}, 3])
    assert decode_rows(arr) == [[1, 2], {"a": 1}, 3]


def test_interior_nul_makes_the_row_invalid_like_the_reference():
    arr = _rows([{"a": 1}] * 3)
    arr[1, 10:14] = np.frombuffer(b"junk", dtype=np.uint8)  # after the NUL padding starts
    with pytest.raises(JsonRowError) as err:
        decode_rows(arr)
    assert err.value.row == 1


def test_nan_literals_fall_back_to_the_standard_parser():
    arr = _rows([{"a": [float("nan"), 1.0]}] * 2)
    out = decode_rows(arr)
    assert np.isnan(out[0]["a"][0]) and out[1]["a"][1] == 1.0
