"""Sampling: the temperature, top-k and top-p filters and their order, the draw, batched samples (--count),
beam search against brute-force enumeration, prime files, and every refusal of `chainrule sample`."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chainrule as cr
from chainrule.charlm import sampling
from chainrule.charlm.cli import main
from chainrule.charlm.model import CharModel, ModelConfig, beam_search, generate, generate_batch
from chainrule.charlm.sampling import draw, filter_logits, log_probabilities, read_prime, top_p_mask
from chainrule.charlm.text import Vocabulary

TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n") * 12


def peaked_model(cell="lstm", seed=0, vocabulary="abc", hidden=8, layers=2, scale=3.0):
    """A random model whose weights are scaled up, so that its distributions are far from uniform."""
    cr.manual_seed(seed)
    model = CharModel(ModelConfig(vocabulary, model=cell, hidden=hidden, layers=layers))
    for parameter in model.parameters():
        parameter.data *= scale
    return model


# -- top-p -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p, kept", [
    (0.25, [1]), (0.5, [1]), (0.5000001, [1, 3]), (0.75, [1, 3]),
    (0.76, [0, 1, 3]),      # 1/8 and 1/8 tie at the edge: the lower id is kept, so the set stays the smallest
    (0.875, [0, 1, 3]), (0.9, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    probabilities = np.array([1 / 8, 1 / 2, 1 / 8, 1 / 4])   # dyadic: every partial sum is exact
    assert np.flatnonzero(top_p_mask(probabilities, p)).tolist() == kept
    # unnormalised rows and a batch of rows give the same sets
    batch = np.stack([probabilities * 8, probabilities[::-1]])
    assert np.flatnonzero(top_p_mask(batch, p)[0]).tolist() == kept
    reversed_kept = sorted(3 - i for i in kept)
    if p not in (0.76, 0.875):   # reversed, the tie breaks the other way round
        assert np.flatnonzero(top_p_mask(batch, p)[1]).tolist() == reversed_kept


def test_top_p_one_keeps_every_possible_character_and_nothing_impossible():
    probabilities = np.array([0.0, 1e-300, 0.7, 0.3 - 1e-17])
    assert top_p_mask(probabilities, 1.0).tolist() == [False, True, True, True]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12).filter(lambda v: sum(v) > 1e-3),
       st.floats(1e-6, 1.0))
def test_the_nucleus_is_a_smallest_top_set_of_mass_at_least_p(values, p):
    probabilities = np.array(values)
    mask = top_p_mask(probabilities, p)
    total = probabilities.sum()
    kept = probabilities[mask]
    assert kept.sum() >= p * total * (1 - 1e-12)
    assert mask.any() and (kept > 0).all()
    if (~mask).any():
        assert kept.min() >= probabilities[~mask].max()             # a top set
    if mask.sum() > 1:
        assert kept.sum() - kept.min() < p * total * (1 + 1e-12)   # without its least member it falls short


def test_the_filters_apply_temperature_then_top_k_then_top_p():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # top-p on what top-k left (4/7, 3/7): p = 0.5 keeps one; top-p first would keep two
    assert np.isfinite(filter_logits(logits, top_k=2, top_p=0.5)).tolist() == [True, False, False, False]
    # the temperature flattens before top-p: at T = 2 the first two hold 0.607 < 0.65 of the mass
    assert np.isfinite(filter_logits(logits, top_p=0.65)).tolist() == [True, True, False, False]
    assert np.isfinite(filter_logits(logits, 2.0, top_p=0.65)).tolist() == [True, True, True, False]
    np.testing.assert_allclose(filter_logits(logits, 2.0), logits / 2.0)
    # top-k keeps ties at its edge, as Hugging Face's TopKLogitsWarper
    assert np.isfinite(filter_logits(np.array([1.0, 2.0, 2.0, 0.0]), top_k=1)).tolist() == [False, True, True, False]


def hugging_face_filters(logits, temperature, top_k, top_p):
    """Hugging Face's TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper, in that order, in torch
    (transformers' generation/logits_process.py, min_tokens_to_keep=1)."""
    import torch
    scores = torch.tensor(logits) / temperature
    top_k = min(top_k, scores.size(-1))
    scores = scores.masked_fill(scores < torch.topk(scores, top_k)[0][..., -1, None], -float("inf"))
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = 0
    return scores.masked_fill(remove.scatter(-1, sorted_indices, remove), -float("inf")).numpy()


@given(st.integers(0, 2**32 - 1), st.floats(0.3, 3.0), st.integers(1, 12), st.floats(0.05, 0.95))
def test_the_filters_match_hugging_faces_in_torch(seed, temperature, top_k, top_p):
    logits = np.random.default_rng(seed).normal(0, 2, size=(4, 10))   # continuous: no ties, no mass exactly p
    np.testing.assert_array_equal(filter_logits(logits, temperature, top_k, top_p),
                                  hugging_face_filters(logits, temperature, top_k, top_p))


@pytest.mark.parametrize("options, words", [
    (dict(top_p=0.0), "top-p must be in (0, 1], got 0.0"), (dict(top_p=1.5), "top-p must be in (0, 1]"),
    (dict(top_p=float("nan")), "top-p must be in (0, 1]"), (dict(top_k=0), "top-k must be an integer"),
    (dict(temperature=0.0), "use argmax"), (dict(temperature=float("inf")), "positive finite")])
def test_filter_values_out_of_range_are_refused(options, words):
    with pytest.raises(ValueError) as error:
        filter_logits(np.zeros(3), **options)
    assert words in str(error.value)


def test_the_draw_follows_the_distribution_and_never_takes_a_removed_character():
    rng = np.random.default_rng(0)
    logits = np.array([[*np.log([0.5, 0.3, 0.2]), -np.inf]])
    counts = np.bincount(np.concatenate([draw(np.repeat(logits, 1000, 0), rng) for _ in range(20)]), minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.3, 0.2, 0.0], atol=0.01)
    assert counts[3] == 0


def test_non_finite_logits_are_refused_as_pytorch_multinomial_refuses():
    for bad in (np.array([[np.nan, 0.0]]), np.array([[np.inf, 0.0]]), np.array([[-np.inf, -np.inf]])):
        with pytest.raises(ValueError, match="not finite"), np.errstate(all="ignore"):
            draw(bad, np.random.default_rng(0))
        with pytest.raises(ValueError, match="not finite"), np.errstate(all="ignore"):
            log_probabilities(bad)


def test_a_model_with_huge_weights_is_refused_by_sampling_and_beam_search():
    model, vocabulary = peaked_model(), Vocabulary("abc")
    model.head.weight.data[...] = 3e38   # finite, but the logits overflow to +-inf
    with np.errstate(all="ignore"):
        with pytest.raises(ValueError, match="not finite"):
            generate_batch(model, vocabulary, "ab", 5, count=2, seed=0)
        with pytest.raises(ValueError, match="not finite"):
            beam_search(model, vocabulary, "ab", 5, width=2)
        assert len(generate_batch(model, vocabulary, "ab", 5, argmax=True)[0]) == 5   # argmax needs no softmax


# -- generation: top-p = 1, --count ----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_top_p_one_is_plain_sampling_and_a_small_top_p_changes_the_text(cell):
    model, vocabulary = peaked_model(cell, vocabulary="abcdefgh", scale=1.5), Vocabulary("abcdefgh")
    plain = "".join(generate(model, vocabulary, "ab", 200, temperature=1.3, seed=7))
    assert "".join(generate(model, vocabulary, "ab", 200, temperature=1.3, seed=7, top_p=1.0)) == plain
    narrow = "".join(generate(model, vocabulary, "ab", 200, temperature=1.3, seed=7, top_p=0.3))
    greedy = "".join(generate(model, vocabulary, "ab", 200, argmax=True))
    assert narrow != plain and len(narrow) == 200
    # a nucleus of (almost) no mass holds only the most likely character: greedy decoding, whatever the seed
    assert "".join(generate(model, vocabulary, "ab", 200, temperature=1.3, seed=8, top_p=1e-9)) == greedy


def test_count_gives_k_reproducible_samples_in_one_batch():
    model, vocabulary = peaked_model(vocabulary="abcdefgh", scale=1.0), Vocabulary("abcdefgh")
    first = generate_batch(model, vocabulary, "abc", 40, count=5, seed=11, top_k=5, top_p=0.9)
    assert len(first) == 5 and all(len(text) == 40 for text in first)
    assert generate_batch(model, vocabulary, "abc", 40, count=5, seed=11, top_k=5, top_p=0.9) == first
    assert len(set(first)) > 1
    assert generate_batch(model, vocabulary, "abc", 40, count=5, seed=12, top_k=5, top_p=0.9) != first
    # count 1 is generate; argmax rows from one prime are equal
    assert generate_batch(model, vocabulary, "abc", 40, count=1, seed=3) == [
        "".join(generate(model, vocabulary, "abc", 40, seed=3))]
    greedy = generate_batch(model, vocabulary, "abc", 40, count=3, argmax=True)
    assert greedy == ["".join(generate(model, vocabulary, "abc", 40, argmax=True))] * 3
    with pytest.raises(ValueError, match="count must be an integer of at least 1"):
        generate_batch(model, vocabulary, "abc", 4, count=0)


def test_a_long_prime_runs_in_chunks_with_the_state_carried(monkeypatch):
    from chainrule.charlm import model as model_module
    model, vocabulary = peaked_model("gru", vocabulary="abcdefgh", scale=1.0), Vocabulary("abcdefgh")
    prime = "".join(np.random.default_rng(0).choice(list("abcdefgh"), 50))
    whole = generate_batch(model, vocabulary, prime, 30, count=2, seed=1)
    monkeypatch.setattr(model_module, "PRIME_CHUNK", 7)
    assert generate_batch(model, vocabulary, prime, 30, count=2, seed=1) == whole


# -- beam search -----------------------------------------------------------------------------------------------
def sequence_log_probabilities(model, vocabulary, prime, continuations):
    """log p(continuation | prime) of each continuation, by one teacher-forced forward pass over all of them."""
    ids = np.array([vocabulary.encode(prime + text) for text in continuations])
    logits, _ = model(ids[:, :-1])
    logp = log_probabilities(logits.data)[:, len(prime) - 1:]
    targets = ids[:, len(prime):]
    return np.take_along_axis(logp, targets[..., None], -1)[..., 0].sum(axis=1)


@pytest.mark.parametrize("cell, seed", [("lstm", 5), ("gru", 4), ("rnn", 0)])
def test_a_beam_as_wide_as_every_continuation_finds_the_global_optimum(cell, seed):
    model, vocabulary, length = peaked_model(cell, seed), Vocabulary("abc"), 4
    every = ["".join(chars) for chars in itertools.product("abc", repeat=length)]
    exact = sequence_log_probabilities(model, vocabulary, "ab", every)
    ranking = sorted(range(len(every)), key=lambda i: -exact[i])
    beams = beam_search(model, vocabulary, "ab", length, width=3 ** length, count=10)
    assert [text for text, _ in beams] == [every[i] for i in ranking[:10]]
    np.testing.assert_allclose([score for _, score in beams], exact[ranking[:10]], rtol=1e-5)
    greedy_text, greedy_score = beam_search(model, vocabulary, "ab", length, width=1)[0]
    if (cell, seed) in (("lstm", 5), ("gru", 4)):   # chosen where greedy decoding misses the optimum
        assert greedy_text != beams[0][0] and greedy_score < beams[0][1]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_beam_one_is_greedy_and_every_score_is_the_exact_log_probability(cell):
    model, vocabulary = peaked_model(cell, seed=2, vocabulary="abcdefgh", scale=1.5), Vocabulary("abcdefgh")
    greedy = "".join(generate(model, vocabulary, "hab", 25, argmax=True))
    assert beam_search(model, vocabulary, "hab", 25, width=1)[0][0] == greedy
    beams = beam_search(model, vocabulary, "hab", 12, width=6, count=6)
    scores = [score for _, score in beams]
    assert scores == sorted(scores, reverse=True) and len({text for text, _ in beams}) == 6
    np.testing.assert_allclose(scores, sequence_log_probabilities(model, vocabulary, "hab",
                                                                  [text for text, _ in beams]), rtol=1e-5)
    assert beam_search(model, vocabulary, "hab", 12, width=6, count=6) == beams   # deterministic
    assert beam_search(model, vocabulary, "hab", 0, width=3) == [("", 0.0)]


@pytest.mark.parametrize("arguments, words", [
    (dict(prime="", length=3, width=2), "continues a prime"), (dict(prime="a", length=3, width=0), "width"),
    (dict(prime="a", length=3, width=2, count=3), "3 were asked for"), (dict(prime="a", length=-1, width=2),
                                                                         "length must be non-negative"),
    (dict(prime="az", length=3, width=2), "not in the model's vocabulary")])
def test_beam_search_refuses_what_it_cannot_do(arguments, words):
    with pytest.raises(ValueError, match=words):
        beam_search(peaked_model(), Vocabulary("abc"), **arguments)


# -- prime files -----------------------------------------------------------------------------------------------
def test_a_prime_file_is_read_as_untrusted_text(tmp_path):
    vocabulary = Vocabulary.from_text(TEXT)
    path = tmp_path / "prime.txt"
    path.write_bytes(b"\xef\xbb\xbfROMEO: But\nJULIET: O")   # a byte-order mark is dropped
    assert read_prime(path, vocabulary) == "ROMEO: But\nJULIET: O"
    cases = [(b"", "the prime file {p} is empty; give a file"),
             (b"ROMEO\r\nJULIET", "Windows line ends"),
             (b"Zurich", "has 2 character(s) that are not in the model's vocabulary of 34: 'Z', 'c'"),
             (b"ROM\xffEO", "the prime file {p} is not UTF-8 text (invalid start byte at byte 3)"),
             (b"R" * 101, "holds more than 100 bytes, the most a prime may have")]
    for content, words in cases:
        path.write_bytes(content)
        with pytest.raises(ValueError) as error:
            read_prime(path, vocabulary, limit=100)
        assert words.format(p=path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="prime file not found"):
        read_prime(tmp_path / "nowhere", vocabulary)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_prime(tmp_path, vocabulary)


# -- the command line ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sampling")
    (folder / "plays.txt").write_text(TEXT, encoding="utf-8")
    status = main(["train", str(folder / "plays.txt"), "--model", "gru", "--hidden", "16", "--layers", "1",
                   "--seq-len", "8", "--batch-size", "4", "--steps", "10", "--eval-every", "10",
                   "--sample-every", "0", "--quiet", "--out", str(folder / "run")])
    assert status == 0
    return folder / "run"


def sample(capsys, *args):
    try:
        status = main(["sample", *map(str, args)])
    except SystemExit as exit_:   # argparse's errors
        status = exit_.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.out, captured.err


@pytest.mark.parametrize("arguments, words", [
    (["--top-p", "0"], "argument --top-p: expected a finite number in (0, 1], got '0'"),
    (["--top-p", "1.5"], "argument --top-p: expected a finite number in (0, 1], got '1.5'"),
    (["--top-p", "nan"], "argument --top-p"),
    (["--temperature", "0"], "use --argmax"), (["--temperature", "-1"], "use --argmax"),
    (["--beam", "0"], "argument --beam: expected an integer in [1, 1024], got '0'"),
    (["--count", "0"], "argument --count: expected an integer in [1, 65536], got '0'"),
    (["--prime", "RO", "--prime-file", "{text}"], "--prime and --prime-file both give the text"),
    (["--prime", "RO", "--beam", "3", "--temperature", "0.5"], "it takes no --temperature"),
    (["--prime", "RO", "--beam", "3", "--top-k", "2", "--top-p", "0.5", "--seed", "1"],
     "it takes no --top-k, --top-p, --seed"),
    (["--prime", "RO", "--beam", "3", "--argmax"], "--argmax is --beam 1"),
    (["--prime", "RO", "--beam", "3", "--count", "4"], "give --beam 4 or more"),
    (["--argmax", "--top-p", "0.9"], "--top-p would change nothing"),
    (["--argmax", "--count", "2"], "use --beam 2 --count 2"),
    (["--prime-file", "{empty}"], "is empty"),
    (["--prime-file", "{latin1}"], "is not UTF-8 text"),
    (["--prime-file", "{unknown}"], "not in the model's vocabulary"),
    (["--prime-file", "{missing}"], "prime file not found"),
])
def test_every_bad_sampling_request_gets_one_line(run, capsys, tmp_path, arguments, words):
    files = {"text": tmp_path / "ok.txt", "empty": tmp_path / "empty.txt", "latin1": tmp_path / "latin1.txt",
             "unknown": tmp_path / "unknown.txt", "missing": tmp_path / "missing.txt"}
    files["text"].write_text("ROMEO")
    files["empty"].write_text("")
    files["latin1"].write_bytes("Roméo".encode("latin-1"))
    files["unknown"].write_text("ROMEO \u20ac")
    status, out, err = sample(capsys, run, "--length", 5, *[a.format(**files) for a in arguments])
    assert status == 2 and words.format(**files) in err, err
    assert out == "" and len([line for line in err.splitlines() if not line.startswith(("usage", " "))]) == 1, err


def test_top_p_one_on_the_command_line_is_plain_sampling(run, capsys):
    plain = sample(capsys, run, "--prime", "RO", "--length", 80, "--seed", 4)
    assert plain[0] == 0 and plain[1].startswith("RO") and len(plain[1]) == 83
    assert sample(capsys, run, "--prime", "RO", "--length", 80, "--seed", 4, "--top-p", 1) == plain
    nucleus = sample(capsys, run, "--prime", "RO", "--length", 80, "--seed", 4, "--top-p", 0.5, "--top-k", 10,
                     "--temperature", 1.2)
    assert nucleus[0] == 0 and nucleus != plain


def test_count_prints_k_separated_reproducible_samples(run, capsys):
    status, out, _ = sample(capsys, run, "--prime", "JU", "--length", 30, "--count", 3, "--seed", 2)
    assert status == 0
    texts = out.split("=== sample ")[1:]
    assert [t.split(" ===\n")[0] for t in texts] == ["1 of 3", "2 of 3", "3 of 3"]
    assert all(len(t.split(" ===\n")[1]) == 2 + 30 + 1 and t.split(" ===\n")[1].startswith("JU") for t in texts)
    assert sample(capsys, run, "--prime", "JU", "--length", 30, "--count", 3, "--seed", 2)[1] == out


def test_beam_and_prime_file_on_the_command_line(run, capsys, tmp_path):
    from chainrule.charlm.model import load_model
    model, vocabulary, _ = load_model(run)
    prime = tmp_path / "prime.txt"
    prime.write_text("ROMEO: But soft,\nJULIET: O Ro", encoding="utf-8")
    status, out, err = sample(capsys, run, "--prime-file", prime, "--length", 12, "--beam", 4)
    best, score = beam_search(model, vocabulary, prime.read_text(), 12, 4)[0]
    assert status == 0 and out == best + "\n" and f"{score:.6f} nats (beam width 4)" in err
    status, out, _ = sample(capsys, run, "--prime", "JU", "--length", 12, "--beam", 4, "--count", 2)
    beams = beam_search(model, vocabulary, "JU", 12, 4, 2)
    assert out == "".join(f"=== beam {i} of 2: log-probability {s:.6f} nats ===\nJU{t}\n"
                          for i, (t, s) in enumerate(beams, 1))
    # a prime file continues exactly as the same text given with --prime (which is repeated in the output)
    from_file = sample(capsys, run, "--prime-file", prime, "--length", 40, "--seed", 5)[1]
    from_option = sample(capsys, run, "--prime", prime.read_text(), "--length", 40, "--seed", 5)[1]
    assert from_option == prime.read_text() + from_file


def test_a_prime_file_from_standard_input(run, capsys, monkeypatch):
    import io
    import sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("ROMEO: But\nJULIET".encode())))
    from_stdin = sample(capsys, run, "--prime-file", "-", "--length", 20, "--seed", 1)
    from_option = sample(capsys, run, "--prime", "ROMEO: But\nJULIET", "--length", 20, "--seed", 1)
    assert from_stdin[0] == 0 and "ROMEO: But\nJULIET" + from_stdin[1] == from_option[1]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    status, _, err = sample(capsys, run, "--prime-file", "-", "--length", 20)
    assert status == 2 and "the prime file standard input is empty" in err


def test_the_prime_size_limit_is_a_prime_limit(tmp_path):
    assert sampling.MAX_PRIME_BYTES == 1 << 20
    path = tmp_path / "long.txt"
    path.write_text("a" * (sampling.MAX_PRIME_BYTES + 1))
    with pytest.raises(ValueError, match="the most a prime may have"):
        read_prime(path, Vocabulary("a"))
