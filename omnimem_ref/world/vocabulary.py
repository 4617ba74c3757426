"""The attributes events can take. Every answer word of every question comes from here."""

# RGB colours, saturated so they stand out from the grey-ish background and survive video codecs.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 70, 240),
    "yellow": (240, 220, 30),
    "magenta": (220, 40, 220),
    "cyan": (30, 220, 230),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

# Tone frequencies in Hz, an octave apart so they land in clearly different mel bands.
PITCHES: dict[str, float] = {"low": 300.0, "middle": 600.0, "high": 1200.0, "highest": 2400.0}

# Loudness levels as peak amplitudes of the tone (the background noise has std 0.02).
LOUD_AMPLITUDE = 0.5
SOFT_AMPLITUDE = 0.15

# The grid objects are placed on: 4 x 4 cells, the same grid the model cuts frames into.
GRID = 4

# --- the general world (presets.py); none of these change the classic world ---------------------

# Distractors: objects and tones that no question refers to. Their colours and pitches lie
# outside the vocabulary above, so no question can name them and no answer word can be one of
# them, yet they draw attention (and keep memory busy) like any other event.
DISTRACTOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "black": (15, 15, 15),
    "orange": (250, 140, 20),
}
# Half an octave above each vocabulary pitch: clearly a different mel band, never named.
DISTRACTOR_PITCHES: dict[str, float] = {
    "low-sharp": 424.3,
    "middle-sharp": 848.5,
    "high-sharp": 1697.1,
    "highest-sharp": 3394.1,
}

# Answer words of the counting family (how many times ...), index + 1 = the number.
COUNT_WORDS: tuple[str, ...] = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
)

# Answer words of the when family: which third of the clip an event lay in.
THIRDS: tuple[str, ...] = ("first", "second", "last")
