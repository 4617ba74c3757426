"""A word-level tokenizer for the synthetic world's prompts, questions and answers.

Built with the ``tokenizers`` library from the closed vocabulary of the world (every word any
question template or answer can use), and saved as a standard ``tokenizer.json``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit

from omnimem_ref.core import PromptFormat
from omnimem_ref.errors import OmniMemError
from omnimem_ref.world.vocabulary import COLOURS, COUNT_WORDS, PITCHES, SHAPES, THIRDS

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>")
PROMPT = "<bos> watch the clip and listen to it ."
QUESTION_PREFIX = "question :"
ANSWER_SUFFIX = "answer :"

TEMPLATE_WORDS = [
    "watch",
    "the",
    "clip",
    "and",
    "listen",
    "to",
    "it",
    ".",
    "question",
    ":",
    "answer",
    ":",
    "?",
    "what",
    "shape",
    "was",
    "object",
    "pitch",
    "of",
    "loudest",
    "tone",
    "colour",
    "on",
    "screen",
    "when",
    "played",
    "which",
    "came",
    "first",
    "or",
]


# The words of the general world's questions (counting, when; omnimem_ref/world/presets.py). They
# come after every older word, so each older word keeps its id: a checkpoint trained before they
# existed (the shipped one, whose tokenizer.json holds the first 46) reads the classic world as it
# always did, and a checkpoint trained on the hard world just has a longer vocabulary.
ADDED_WORDS = [
    "how",
    "many",
    "times",
    "did",
    "play",
    "appear",
    "in",
    "third",
    *COUNT_WORDS,
    *THIRDS,
]


def vocabulary() -> list[str]:
    words = [*SPECIAL_TOKENS, *TEMPLATE_WORDS, *COLOURS, *SHAPES, *PITCHES, *ADDED_WORDS]
    return list(dict.fromkeys(words))  # de-duplicated, order kept


def build_tokenizer() -> Tokenizer:
    vocab = {word: i for i, word in enumerate(vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    return tokenizer


def load_tokenizer(directory: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))


def question_text(question: str) -> str:
    """The text the model reads after the stream; the answer is read at its last token."""
    return f"{QUESTION_PREFIX} {question} {ANSWER_SUFFIX}"


def prompt_length(tokenizer: Tokenizer) -> int:
    """Tokens of the prompt prefix every stream starts with (always kept in memory)."""
    return len(encode(tokenizer, PROMPT))


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text``; refuses words outside the vocabulary instead of guessing."""
    unknown = [word for word in text.split() if tokenizer.token_to_id(word) is None]
    if unknown:
        raise OmniMemError(
            f"The model does not know the words {' '.join(unknown)!r}: it was trained on another "
            "world's questions (the shipped TinyOmni knows the classic world's); use a checkpoint "
            "trained on this data's world, or data generated with --world classic."
        )
    return tokenizer.encode(text).ids


class TinyOmniPrompts(PromptFormat):
    """TinyOmni's text: :data:`PROMPT` before the stream, ``question : ... answer :`` after it,
    and each answer option one word of the closed vocabulary."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def prompt_ids(self) -> list[int]:
        return encode(self.tokenizer, PROMPT)

    def question_ids(self, question: str) -> list[int]:
        return encode(self.tokenizer, question_text(question))

    def option_id(self, option: str) -> int:
        return encode(self.tokenizer, option)[0]
