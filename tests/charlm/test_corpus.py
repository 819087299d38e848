"""The memory-mapped corpus: ids identical to the in-memory encoding (any chunking), the cache's keys and
atomicity, bad input, and training / evaluation on the map bit-identical to training on the text in memory."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainrule.charlm import corpus as corpus_module
from chainrule.charlm.corpus import (Corpus, check_input_mode, corpus_from_text, encode_file, ids_in, load_corpus,
                                     token_dtype)
from chainrule.charlm.text import Vocabulary, read_text, text_digest

TEXT = "Grüße, naïve café — 東京 🙂 and plain ASCII.\n" * 20


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_same_as_in_memory(path: Path, cache: Path) -> Corpus:
    mapped = encode_file(path, cache, progress=False)
    text = read_text(path)
    vocabulary = Vocabulary.from_text(text)
    assert isinstance(mapped.ids, np.memmap) and mapped.ids.dtype == token_dtype(len(vocabulary))
    assert mapped.vocabulary.characters == vocabulary.characters
    assert np.array_equal(np.asarray(mapped.ids, dtype=np.int64), vocabulary.encode(text))
    assert mapped.sha256 == text_digest(text)   # the digest checkpoints written before recorded
    return mapped


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4096])
def test_ids_equal_the_in_memory_encoding_for_every_chunk_size(tmp_path, monkeypatch, chunk):
    """Chunks of 1..7 bytes split 2-, 3- and 4-byte characters at every offset; a leading byte-order mark is
    dropped as read_text drops it (and not counted in the digest)."""
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk)
    assert_same_as_in_memory(write(tmp_path / "a.txt", TEXT), tmp_path / "cache")
    assert_same_as_in_memory(write(tmp_path / "bom.txt", "\ufeff" + TEXT), tmp_path / "cache")
    assert_same_as_in_memory(write(tmp_path / "ascii.txt", "abc\ufeff" * 5), tmp_path / "cache")
    # uint16 ids with ASCII-only chunks among the others
    wide = "plain words " * 3 + "".join(chr(0x4E00 + i) for i in range(300)) + " and more ASCII at the end"
    assert assert_same_as_in_memory(write(tmp_path / "wide.txt", wide), tmp_path / "cache").ids.dtype == np.uint16


@given(st.text(min_size=1, max_size=200).filter(lambda t: t != "\ufeff"), st.integers(1, 9))
def test_any_text_any_chunking(tmp_path_factory, text, chunk):
    folder = tmp_path_factory.mktemp("any")
    original = corpus_module.CHUNK_BYTES
    corpus_module.CHUNK_BYTES = chunk
    try:
        # surrogates are not UTF-8: read_text refuses them too
        data = text.encode("utf-8", "surrogatepass")
        path = write(folder / "t.txt", data)
        try:
            expected = read_text(path)
        except ValueError as error:
            with pytest.raises(ValueError) as raised:
                encode_file(path, folder / "cache", progress=False)
            assert str(raised.value) == str(error)
            return
        mapped = encode_file(path, folder / "cache", progress=False)
        assert np.array_equal(np.asarray(mapped.ids, np.int64), Vocabulary.from_text(expected).encode(expected))
    finally:
        corpus_module.CHUNK_BYTES = original


def test_the_smallest_unsigned_dtype_holds_the_vocabulary(tmp_path):
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    assert encode_file(write(tmp_path / "w.txt", wide), tmp_path / "c", progress=False).ids.dtype == np.uint16
    assert encode_file(write(tmp_path / "n.txt", "ab"), tmp_path / "c", progress=False).ids.dtype == np.uint8
    assert token_dtype(70_000) == np.uint32


@pytest.mark.parametrize("data", [b"ok \xff", b"abc\xe2\x82", b"\xe2\x82\xac\xe2(\xa1 x", b"x" * 9 + b"\xc3\x28",
                                  b"\xef\xbb\xbfab\xed\xa0\x80", b"ab\xf0\x9f\x99"])
@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_invalid_utf8_names_the_byte_offset_read_text_names(tmp_path, monkeypatch, data, chunk):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "bad.txt", data)
    with pytest.raises(ValueError) as expected:
        read_text(path)
    with pytest.raises(ValueError) as raised:
        encode_file(path, tmp_path / "cache", progress=False)
    assert str(raised.value) == str(expected.value) and "at byte" in str(raised.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_an_empty_text_is_refused(tmp_path, data):
    with pytest.raises(ValueError, match="is empty"):
        encode_file(write(tmp_path / "e.txt", data), tmp_path / "cache", progress=False)


def test_a_later_run_reuses_the_cache_without_reading_the_text(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", TEXT)
    first = encode_file(path, tmp_path / "cache", progress=False)

    def unexpected(*args):
        raise AssertionError("the text was read again")

    monkeypatch.setattr(corpus_module, "_scan", unexpected)
    again = encode_file(path, tmp_path / "cache", progress=False)
    assert again.sha256 == first.sha256 and np.array_equal(again.ids, first.ids)


def test_an_edited_text_is_encoded_again_and_a_touched_one_is_only_hashed(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", "abcabc")
    cache = tmp_path / "cache"
    first = encode_file(path, cache, progress=False)
    os.utime(path, ns=(1, 1))   # same bytes, another mtime: hashed again, the entry reused
    writes = []
    original = corpus_module._write_entry
    monkeypatch.setattr(corpus_module, "_write_entry", lambda *a: writes.append(1) or original(*a))
    assert encode_file(path, cache, progress=False).sha256 == first.sha256 and not writes
    write(path, "abcabd")       # same size, other bytes
    os.utime(path, ns=(2, 2))
    edited = encode_file(path, cache, progress=False)
    assert writes and edited.sha256 != first.sha256 and edited.vocabulary.characters == "abcd"
    assert edited.ids.tolist() == [0, 1, 2, 0, 1, 3]


def test_an_interrupted_encode_leaves_nothing_a_later_run_trusts(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", TEXT)
    cache = tmp_path / "cache"
    calls = []
    original = corpus_module._scan

    def interrupted(path, name, consume, bar):
        calls.append(1)
        if len(calls) == 2:   # the second pass, writing ids.npy
            original(path, name, consume, bar)
            raise KeyboardInterrupt
        return original(path, name, consume, bar)

    monkeypatch.setattr(corpus_module, "_scan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_file(path, cache, progress=False)
    assert [p.name for p in cache.iterdir()] == []   # the temporary folder is removed, no index, no entry
    monkeypatch.setattr(corpus_module, "_scan", original)
    assert_same_as_in_memory(path, cache)


def test_a_damaged_entry_is_set_aside_and_encoded_again(tmp_path, capsys):
    """B1: a damaged entry (here without ids.npy) once blocked its text for good (the rename onto it failed)."""
    path = write(tmp_path / "t.txt", TEXT)
    cache = tmp_path / "cache"
    digest = text_digest(TEXT)
    (cache / digest).mkdir(parents=True)
    (cache / digest / "vocabulary.json").write_text('{"format": 1}')
    assert_same_as_in_memory(path, cache)
    assert "damaged (vocabulary.json of another (older?) format)" in capsys.readouterr().err
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_a_text_that_changes_while_it_is_encoded_is_refused(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", TEXT)
    original = corpus_module._write_entry

    def edit_between_passes(path_, name, cache, digest, characters, vocabulary, fingerprint, bar):
        stat = os.stat(path_)
        write(path_, TEXT.replace("a", "b"))          # same size
        os.utime(path_, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # and the same mtime: the digest tells
        return original(path_, name, cache, digest, characters, vocabulary, fingerprint, bar)

    monkeypatch.setattr(corpus_module, "_write_entry", edit_between_passes)
    with pytest.raises(ValueError, match="changed while it was being encoded"):
        encode_file(path, tmp_path / "cache", progress=False)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name != "index"]
    monkeypatch.setattr(corpus_module, "_write_entry",
                        lambda p, *a: (write(p, TEXT + "more"), original(p, *a))[1])
    with pytest.raises(ValueError, match="changed while it was being encoded"):
        encode_file(write(path, TEXT), tmp_path / "cache", progress=False)


_ENCODE = ("import sys; from chainrule.charlm.corpus import encode_file; "
           "c = encode_file(sys.argv[1], sys.argv[2], progress=False); print(c.sha256, int(c.ids.sum()))")


def test_concurrent_encoders_of_one_text_agree_and_leave_one_entry(tmp_path):
    path = write(tmp_path / "t.txt", TEXT * 2000)   # ~1 MB, several chunks
    cache = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, "-c", _ENCODE, str(path), str(cache)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert len({out for out, _ in outputs}) == 1
    assert [p.name for p in cache.iterdir() if p.name != "index"] == [text_digest(TEXT * 2000)]
    assert_same_as_in_memory(path, cache)


def test_pipes_are_read_in_memory_and_not_cached(tmp_path):
    read, write_end = os.pipe()
    os.write(write_end, TEXT.encode("utf-8"))
    os.close(write_end)
    try:
        loaded = load_corpus(f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert loaded.ids.dtype == np.int64 and not isinstance(loaded.ids, np.memmap)
    assert loaded.sha256 == text_digest(TEXT)
    assert not corpus_module.cache_folder().exists() or not any(
        p.name == text_digest(TEXT) for p in corpus_module.cache_folder().iterdir())


def test_a_huge_vocabulary_needs_an_embedding():
    check_input_mode(corpus_module.ONE_HOT_MAX_VOCABULARY, 0)
    check_input_mode(100_000, 16)
    with pytest.raises(ValueError, match="--embedding"):
        check_input_mode(corpus_module.ONE_HOT_MAX_VOCABULARY + 1, 0)


def test_ids_in_another_vocabulary(tmp_path):
    mapped = encode_file(write(tmp_path / "t.txt", "cab"), tmp_path / "cache", progress=False)
    assert ids_in(mapped, Vocabulary("abcd")).tolist() == [2, 0, 1]
    assert ids_in(mapped, Vocabulary("abc")) is mapped.ids
    with pytest.raises(ValueError, match="1 character.*'c'"):
        ids_in(mapped, Vocabulary("ab"))


# -- training and evaluation on the map ------------------------------------------------------------------
def _train(config_text, corpus, out, steps=12):
    from chainrule.charlm.training import TrainConfig, Trainer

    config = TrainConfig.from_options(dict(text=config_text, model="lstm", hidden=16, layers=2, seq_len=8,
                                           batch_size=4, steps=steps, val_frac=0.1, eval_every=5, sample_every=0,
                                           seed=3))
    trainer = Trainer(config, out, quiet=True, corpus=corpus)
    progress = trainer.train()
    return trainer, progress


def test_training_on_the_map_is_bit_identical_to_training_on_the_text_in_memory(tmp_path):
    path = write(tmp_path / "plays.txt", "\ufeff" + TEXT * 3)
    in_memory, memory_progress = _train(None, (read_text(path), str(path)), tmp_path / "a")
    mapped, mapped_progress = _train(str(path), None, tmp_path / "b")
    assert isinstance(mapped.train_streams.ids, np.memmap) and mapped.train_streams.ids.dtype == np.uint8
    assert mapped.text_sha256 == in_memory.text_sha256
    for (name, a), (_, b) in zip(in_memory.model.state_dict().items(), mapped.model.state_dict().items()):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    assert [h["val_loss"] for h in memory_progress.history] == [h["val_loss"] for h in mapped_progress.history]
    assert [h["train_loss"] for h in memory_progress.history] == [h["train_loss"] for h in mapped_progress.history]


def test_eval_and_resume_use_the_cached_corpus(tmp_path, capsys):
    from chainrule.charlm.cli import main

    path = write(tmp_path / "plays.txt", TEXT * 3)
    out = tmp_path / "run"
    tiny = ["--model", "gru", "--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2",
            "--sample-every", "0", "--quiet", "--out", str(out)]
    assert main(["train", str(path), "--steps", "4", *tiny]) == 0
    assert main(["train", str(path), "--resume", str(out), "--steps", "6", "--quiet"]) == 0
    from chainrule.charlm.checkpoint import load_checkpoint
    from chainrule.charlm.model import evaluate, load_model

    assert load_checkpoint(out / "latest.json")[1]["step"] == 6
    model, vocabulary, _ = load_model(out)
    expected = evaluate(model, vocabulary.encode(TEXT[:500]), 32, 128)
    other = write(tmp_path / "part.txt", TEXT[:500])   # fewer characters than the model's vocabulary
    mapped = evaluate(model, ids_in(load_corpus(other), vocabulary), 32, 128)
    assert mapped == expected
    edited = write(tmp_path / "plays2.txt", TEXT * 3 + "x")
    assert main(["train", str(edited), "--resume", str(out), "--steps", "8", "--quiet"]) != 0
    assert "its content differs from the text the run was trained on" in capsys.readouterr().err
    assert corpus_from_text("ab", "t").ids.dtype == np.int64


def test_an_abandoned_temporary_folder_is_removed_after_a_day(tmp_path):
    cache = tmp_path / "cache"
    old, recent = cache / ".tmp-old", cache / ".tmp-recent"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "ids.npy").write_bytes(b"partial")
    os.utime(old, (1, 1))
    assert_same_as_in_memory(write(tmp_path / "t.txt", TEXT), cache)
    assert not old.exists() and recent.exists()   # a recent one may be a running encoder's


# -- the cache is untrusted input ---------------------------------------------------------------------------

def entry_of(cache: Path, text: str) -> Path:
    return cache / text_digest(text)


def test_an_edit_that_keeps_size_and_mtime_is_seen_by_its_ctime(tmp_path):
    """A1: `sed -i` then `touch -r` keeps size and mtime; st_ctime_ns (which touch cannot set) still moves."""
    path = write(tmp_path / "a.txt", "hello there")
    cache = tmp_path / "cache"
    encode_file(path, cache, progress=False)
    before = os.stat(path)
    write(path, "hQllo thQrQ")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if after.st_ctime_ns == before.st_ctime_ns:
        pytest.skip("this file system's ctime did not move")
    again = encode_file(path, cache, progress=False)
    assert again.vocabulary.decode(again.ids) == "hQllo thQrQ"


def test_an_index_pointing_at_another_texts_entry_is_not_trusted(tmp_path, capsys):
    """A2: the index is a hint; an entry made from other bytes (size or fingerprint) is not served."""
    cache = tmp_path / "cache"
    a, b = write(tmp_path / "a.txt", "aaaa bbbb"), write(tmp_path / "b.txt", "some other text entirely")
    encode_file(a, cache, progress=False)
    encode_file(b, cache, progress=False)
    for index in (cache / "index").glob("*.json"):
        index.write_text('{"sha256": "%s"}' % text_digest("some other text entirely"))
    served = encode_file(a, cache, progress=False)
    assert served.vocabulary.decode(served.ids) == "aaaa bbbb" and served.sha256 == text_digest("aaaa bbbb")
    # the same size, the same first and last bytes would pass the fingerprint; a different size never does
    assert "made from another text" in capsys.readouterr().err
    # b's entry was set aside only as a hint for a; b itself is still served right
    assert encode_file(b, cache, progress=False).sha256 == text_digest("some other text entirely")


def rewrite_meta(entry: Path, **changes) -> None:
    meta = json.loads((entry / "vocabulary.json").read_text())
    meta.update(changes)
    (entry / "vocabulary.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("vocabulary", ["cba", "acb", "aab", ""])
def test_a_vocabulary_out_of_code_point_order_is_damage(tmp_path, capsys, vocabulary):
    """A3: a reordered or repeated vocabulary would decode every id to another character."""
    path = write(tmp_path / "t.txt", "abcabc")
    cache = tmp_path / "cache"
    encode_file(path, cache, progress=False)
    rewrite_meta(entry_of(cache, "abcabc"), vocabulary=vocabulary)
    again = encode_file(path, cache, progress=False)
    assert again.vocabulary.characters == "abc" and again.vocabulary.decode(again.ids) == "abcabc"
    assert "damaged" in capsys.readouterr().err


def test_ids_past_the_vocabulary_are_damage(tmp_path, capsys, monkeypatch):
    """A4: an id past the vocabulary, anywhere in ids.npy, is found on open (chunk by chunk), not mid-run."""
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 3)
    path = write(tmp_path / "t.txt", "abcabcabca")
    cache = tmp_path / "cache"
    encode_file(path, cache, progress=False)
    ids = entry_of(cache, "abcabcabca") / "ids.npy"
    data = bytearray(ids.read_bytes())
    data[-1] = 7   # the last id, in the last chunk
    ids.write_bytes(bytes(data))
    again = encode_file(path, cache, progress=False)
    assert again.ids.tolist() == [0, 1, 2] * 3 + [0]
    assert "ids past the vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["empty", "truncated", "pickled", "not json", "not utf-8", "2-D"])
def test_every_kind_of_unreadable_entry_is_damage_not_a_failure(tmp_path, capsys, damage):
    """B2: a 0-byte ids.npy gave EOFError ("an unexpected failure"); any read error means a damaged entry."""
    path = write(tmp_path / "t.txt", "abcabc")
    cache = tmp_path / "cache"
    encode_file(path, cache, progress=False)
    entry = entry_of(cache, "abcabc")
    if damage == "empty":
        (entry / "ids.npy").write_bytes(b"")
    elif damage == "truncated":
        (entry / "ids.npy").write_bytes((entry / "ids.npy").read_bytes()[:-2])
    elif damage == "pickled":
        np.save(entry / "ids.npy", np.array([0, 1, 2, 0, 1, 2], dtype=object), allow_pickle=True)
    elif damage == "not json":
        (entry / "vocabulary.json").write_text("{")
    elif damage == "not utf-8":
        (entry / "vocabulary.json").write_bytes(b"\xff\xfe")
    else:
        np.save(entry / "ids.npy", np.zeros((2, 3), dtype=np.uint8))
    again = encode_file(path, cache, progress=False)
    assert again.vocabulary.decode(again.ids) == "abcabc"
    assert "damaged" in capsys.readouterr().err


@pytest.mark.parametrize("link", ["entry", "ids.npy", "vocabulary.json", "index folder", "index file"])
def test_symbolic_links_in_the_cache_are_never_read_through(tmp_path, capsys, link):
    """C1: a link inside the cache (to another text's entry or outside the cache) is refused, not followed."""
    cache = tmp_path / "cache"
    path = write(tmp_path / "t.txt", "abcabc")
    other = write(tmp_path / "o.txt", "xyzzyx")
    encode_file(other, tmp_path / "elsewhere", progress=False)
    outside = entry_of(tmp_path / "elsewhere", "xyzzyx")
    encode_file(path, cache, progress=False)
    entry = entry_of(cache, "abcabc")
    if link in ("entry", "ids.npy", "vocabulary.json"):
        target = entry if link == "entry" else entry / link
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(outside if link == "entry" else outside / link)
    elif link == "index folder":
        shutil.move(cache / "index", tmp_path / "index-outside")
        (cache / "index").symlink_to(tmp_path / "index-outside")
    else:
        (index,) = (cache / "index").glob("*.json")
        encode_file(other, cache, progress=False)   # the hint outside names an entry the cache holds
        index.unlink()
        (tmp_path / "hint.json").write_text('{"sha256": "%s"}' % text_digest("xyzzyx"))
        index.symlink_to(tmp_path / "hint.json")
    again = encode_file(path, cache, progress=False)
    assert again.vocabulary.decode(again.ids) == "abcabc"
    # the entry outside the cache is neither served nor removed
    assert (outside / "ids.npy").exists() and (outside / "vocabulary.json").exists()
    if link == "index folder":
        assert "could not record" in capsys.readouterr().err   # not written through the link


def test_cache_location_errors_name_the_cache_and_its_variable(tmp_path, capsys):
    """D: a cache under a file gave a bare "Not a directory"."""
    path = write(tmp_path / "t.txt", "abcabc")
    afile = write(tmp_path / "afile", "x")
    with pytest.raises(OSError, match=r"corpus cache .*\$CHAINRULE_CACHE"):
        encode_file(path, afile / "corpora", progress=False)


def test_a_failed_index_write_after_a_good_encode_is_a_warning(tmp_path, capsys):
    """D: "corpora/index: File exists" after a successful encode ended the run."""
    path = write(tmp_path / "t.txt", "abcabc")
    cache = tmp_path / "cache"
    cache.mkdir()
    write(cache / "index", "not a folder")
    corpus = encode_file(path, cache, progress=False)
    assert corpus.vocabulary.decode(corpus.ids) == "abcabc"
    err = capsys.readouterr().err
    assert "warning: could not record" in err and "$CHAINRULE_CACHE" in err


def test_entry_folders_get_the_usual_mode_for_a_shared_cache(tmp_path):
    """D: mkdtemp's 0700 made a shared cache's entries unreadable to the group."""
    path = write(tmp_path / "t.txt", "abcabc")
    cache = tmp_path / "cache"
    mask = os.umask(0o022)
    try:
        encode_file(path, cache, progress=False)
    finally:
        os.umask(mask)
    assert entry_of(cache, "abcabc").stat().st_mode & 0o777 == 0o755
    (index,) = (cache / "index").glob("*.json")
    assert index.stat().st_mode & 0o777 == 0o644


def test_validation_of_a_long_held_out_part_scores_a_fixed_prefix(tmp_path, monkeypatch):
    """A gigabyte text's validation part would take minutes at every evaluation: a prefix of
    MAX_VALIDATION_CHARACTERS is scored, the same each time, and the run says so once."""
    from chainrule.charlm import training

    monkeypatch.setattr(training, "MAX_VALIDATION_CHARACTERS", 500)
    said = []
    config = training.TrainConfig(hidden=8, layers=1, seq_len=8, batch_size=2, steps=2, eval_every=2,
                                  sample_every=0, val_frac=0.5)
    trainer = training.Trainer(config, tmp_path / "run", report=said.append, quiet=True,
                               corpus=(TEXT * 10, "plays"))
    assert len(trainer.val_ids) == 500
    assert any("validation scores the first 500 of the" in line for line in said)
