import os
import shutil

from robocurate.io.digest import DigestMemo, hash_file


def test_memo_invalidates_on_change_at_same_path_and_hits_for_copies(tmp_path):
    memo = DigestMemo(tmp_path / "memo.sqlite")
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(1 << 20))
    d1 = memo.digest(f)
    assert d1 == hash_file(f)
    # Same size, same mtime: only the bytes (and ctime) differ.
    st = os.stat(f)
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert memo.digest(f) != d1
    copy = tmp_path / "b.bin"
    shutil.copyfile(f, copy)
    assert memo.digest(copy) == memo.digest(f)


def test_memo_does_not_reread_unchanged_files(tmp_path, monkeypatch):
    memo = DigestMemo(tmp_path / "memo.sqlite")
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 1000)
    memo.digest(f)
    import robocurate.io.digest as digest_mod

    monkeypatch.setattr(digest_mod, "hash_file", lambda p: (_ for _ in ()).throw(AssertionError))
    memo.digest(f)  # served from the memo


def test_settled_states_are_scoped(tmp_path):
    memo = DigestMemo(tmp_path / "memo.sqlite")
    memo.settle("scope", "state-after", "run:1")
    assert memo.settled("scope", "state-after") == "run:1"
    assert memo.settled("other-scope", "state-after") is None
    assert memo.settled("scope", "state-before") is None
