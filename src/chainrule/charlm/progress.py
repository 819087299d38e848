"""What a training run shows while it runs and when it ends: the progress bar and the sample's prime.

The bar runs against the budget that ends the run: with `--minutes`, training seconds (elapsed / total and
the time left); otherwise optimizer steps. Its postfix holds the last step's training loss, the last
validation loss, characters per second and the learning rate.

The prime of the samples shown (at the end of `chainrule train`, and by `chainrule sample` without
--prime) makes the model continue prose of its corpus rather than whatever follows a random character
(in the Python reference manual, often a table rule of dashes): with the corpus at hand, the opening of the
first prose paragraph of the validation text (`prose_opening`); without it, a fixed opening the vocabulary
can spell (`FIXED_PRIMES`).
"""
from __future__ import annotations

import re
from typing import Any

# tried in order: the first whose characters are all in the vocabulary is the prime
FIXED_PRIMES = ("The ", "the ", "A ", "a ", "\n")
# a paragraph's first line that reads as prose: a capitalised word, then four or more words of letters
_PROSE = re.compile(r"^[ \t]*([A-Z][a-z]+(?: [a-z][a-z,]*){4,})")


def fixed_prime(characters: str) -> str:
    """The first of FIXED_PRIMES that `characters` (a vocabulary) can spell, or "" (the sampler then starts
    from a random character).

    >>> fixed_prime("ehT abc"), fixed_prime("eht "), fixed_prime("xyz")
    ('The ', 'the ', '')
    """
    present = set(characters)
    return next((prime for prime in FIXED_PRIMES if set(prime) <= present), "")


def prose_opening(text: str, characters: str, words: int = 6) -> str:
    """The first `words` words (and the space after them) of the first paragraph of `text` whose first line
    reads as prose (a capitalised word and at least four words of letters after it, at the start of the text
    or after a blank line), when `characters` can spell it; otherwise `fixed_prime(characters)`.

    >>> prose_opening("-----\\n\\n   Set d[key] to value.\\n\\n   The example above shows part of it.\\n", "abc")
    ''
    >>> text = "-----\\n\\n   Set d[key].\\n\\n   The example above shows part of it.\\n"
    >>> prose_opening(text, sorted(set(text)), words=3)
    'The example above '
    """
    present = set(characters)
    for paragraph in re.split(r"\n[ \t]*\n", text):
        match = _PROSE.match(paragraph)
        if match is None:
            continue
        opening = " ".join(match.group(1).split(" ")[:words]) + " "
        if set(opening) <= present:
            return opening
    return fixed_prime(characters)


class TrainingBar:
    """A tqdm bar against the run's budget. `minutes`: the bar's total is that many seconds of training time
    (the clock `Progress.elapsed` keeps, evaluation excluded) and it shows elapsed / total and the time left;
    otherwise `total_steps` (None: an open count). `disable`: no bar at all (--quiet)."""

    def __init__(self, minutes: float | None, total_steps: int | None, step: int, disable: bool) -> None:
        from tqdm import tqdm

        self.by_time = minutes is not None
        self.losses: dict[str, str] = {}
        if minutes is not None:
            self.bar = tqdm(total=round(minutes * 60, 1), initial=0, disable=disable, unit="s", dynamic_ncols=True,
                            desc="training", bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                            "[{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=total_steps, initial=step, disable=disable, unit="step", dynamic_ncols=True,
                            desc="training")

    def advance(self, seconds: float, step: int, loss: float, lr: float, chars_per_second: float | None) -> None:
        """One step done: `seconds` of training time it took; its loss and the learning rate it used."""
        if self.by_time:
            self.bar.update(min(seconds, self.bar.total - self.bar.n))
        else:
            self.bar.update(1)
        self.losses["loss"] = f"{loss:.3f}"
        self.losses["lr"] = f"{lr:.2e}"
        if chars_per_second is not None:
            self.losses["chars/s"] = f"{chars_per_second:.0f}"
        if self.by_time:
            self.losses["step"] = str(step)
        self.bar.set_postfix(self._ordered(), refresh=False)

    def evaluated(self, record: dict[str, Any]) -> None:
        """An evaluation record (`Trainer._record_evaluation`): its validation loss joins the postfix."""
        if record["val_loss"] is not None:
            self.losses["val"] = f"{record['val_loss']:.4f}"
        self.losses["chars/s"] = f"{record['chars_per_second']:.0f}"
        self.bar.set_postfix(self._ordered(), refresh=True)

    def _ordered(self) -> dict[str, str]:
        return {k: self.losses[k] for k in ("step", "loss", "val", "chars/s", "lr") if k in self.losses}

    def set_postfix_str(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def write(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


CLOSING_SAMPLE_LENGTH = 300


def closing_sample(model: Any, vocabulary: Any, validation_text: str | None, length: int = CLOSING_SAMPLE_LENGTH,
                   seed: int | None = None) -> str:
    """The sample `chainrule train` prints at its end: `length` characters at temperature 0.8 continuing
    `prose_opening` of the validation text (without one, `fixed_prime`), the prime included."""
    from .model import generate

    characters = vocabulary.characters
    prime = prose_opening(validation_text, characters) if validation_text else fixed_prime(characters)
    return prime + "".join(generate(model, vocabulary, prime, length, temperature=0.8, seed=seed))
