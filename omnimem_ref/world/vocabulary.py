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
