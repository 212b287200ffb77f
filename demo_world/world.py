"""The demo world: coloured shapes on scenes, described by captions.

An object has a colour and a shape (together its *kind*, e.g. "red star", the class names of
the downstream datasets) and four attributes that captions mention only sometimes: size,
fill, position and the scene behind it. Captions wrap the object in one of twelve templates,
so most of a caption's tokens are context shared by every caption; together with a joint
embedding much smaller than the number of phrases, that is meant to give class prompts a
large shared direction, as real CLIP's have.

Some colour–shape kinds never appear in pretraining (``HELD_OUT``): zero-shot accuracy on them
measures composition rather than memory. Everything here is a pure function of its arguments
and of the seeded generators passed in, so the world is reproducible bit for bit.
"""
import random
from dataclasses import asdict, dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 130, 25),
    "yellow": (235, 215, 35),
    "lime": (155, 225, 45),
    "green": (35, 145, 55),
    "teal": (25, 135, 130),
    "cyan": (50, 210, 230),
    "blue": (35, 65, 210),
    "purple": (120, 45, 180),
    "magenta": (215, 45, 200),
    "pink": (250, 160, 195),
    "brown": (125, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star", "ring", "hexagon",
          "crescent", "arrow", "bar", "frame")
SIZES = ("small", "large")
FILLS = ("solid", "striped", "dotted")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")
# Scenes are low-saturation backgrounds, so they do not compete with the object's colour.
SCENES: Dict[str, Tuple[int, int, int]] = {
    "night": (22, 22, 38),
    "snow": (232, 232, 238),
    "sand": (212, 194, 150),
    "fog": (150, 150, 156),
    "slate": (72, 80, 92),
}

# Caption templates; "{}" is the object phrase, position and scene follow it.
TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a drawing of a {}",
    "a rendering of a {}",
    "a close-up photo of a {}",
    "a photo of the {}",
    "a simple {}",
    "this is a {}",
    "there is a {}",
    "a sketch of a {}",
    "a {}",
)


def kind_name(colour: str, shape: str) -> str:
    """The class name of a colour–shape kind, e.g. "red star"."""
    return f"{colour} {shape}"


def all_kinds() -> List[Tuple[str, str]]:
    """Every (colour, shape) pair, colours then shapes in their listed order."""
    return [(colour, shape) for colour in COLOURS for shape in SHAPES]


def is_held_out(colour: str, shape: str) -> bool:
    """Whether a kind is kept out of pretraining: two shapes per colour and two colours per
    shape (a fixed diagonal pattern), so every word is still seen in other kinds."""
    c = list(COLOURS).index(colour)
    s = SHAPES.index(shape)
    return (s - c) % len(SHAPES) in (0, 5)


HELD_OUT = tuple(kind for kind in all_kinds() if is_held_out(*kind))
SEEN = tuple(kind for kind in all_kinds() if not is_held_out(*kind))


class WorldObject(NamedTuple):
    """One object to draw and describe."""

    colour: str
    shape: str
    size: str
    fill: str
    position: str
    scene: str


@dataclass(frozen=True)
class WorldSpec:
    """The tunable parts of the world; part of the pretraining cache key.

    ``mention`` is the chance that a caption names each optional attribute; ``noise`` the
    standard deviation of pixel noise (0–255 scale); ``jitter`` the colour jitter per channel;
    ``tint`` the camera's gain per colour channel (its white balance).
    """

    mention: float = 0.5
    noise: float = 12.0
    jitter: int = 18
    distractors: int = 6
    tint: Tuple[float, float, float] = (1.0, 1.0, 1.0)

    def as_dict(self) -> dict:
        """The spec as plain data (for hashing and records)."""
        return asdict(self)


DEFAULT_SPEC = WorldSpec()
# The downstream domain: the same objects through another camera (twice the pixel noise, more
# colour jitter and clutter, a warm white balance), as a real benchmark differs from CLIP's
# web data. Chosen on the frozen model alone (zero-shot and linear-probe accuracy), so that
# zero-shot falls short of what the image features allow and prompts can learn something.
DOWNSTREAM_SPEC = WorldSpec(noise=24.0, jitter=30, distractors=12, tint=(1.15, 1.0, 0.82))


def random_object(rng: random.Random, kinds: Sequence[Tuple[str, str]]) -> WorldObject:
    """An object of one of ``kinds`` with every other attribute drawn uniformly."""
    colour, shape = kinds[rng.randrange(len(kinds))]
    return WorldObject(colour, shape, rng.choice(SIZES), rng.choice(FILLS),
                       rng.choice(POSITIONS), rng.choice(list(SCENES)))


def object_of_kind(rng: random.Random, colour: str, shape: str) -> WorldObject:
    """An object of one given kind, its other attributes drawn uniformly."""
    return random_object(rng, [(colour, shape)])


def caption(rng: random.Random, obj: WorldObject, spec: WorldSpec = DEFAULT_SPEC) -> str:
    """A caption of ``obj``: a template around the object phrase, each optional attribute
    named with probability ``spec.mention``. The bare form ("a photo of a red star.") is
    one of its outcomes, so zero-shot class prompts are in the captions' distribution."""
    template = TEMPLATES[rng.randrange(len(TEMPLATES))]
    words = []
    if rng.random() < spec.mention:
        words.append(obj.size)
    if rng.random() < spec.mention:
        words.append(obj.fill)
    words += [obj.colour, obj.shape]
    text = template.format(" ".join(words))
    if rng.random() < spec.mention:
        text += " " + obj.position
    if rng.random() < spec.mention:
        text += " on " + obj.scene if obj.scene != "night" else " at night"
    return text + "."


# ---------------------------------------------------------------------- drawing


def _centre(rng: random.Random, position: str, radius: int) -> Tuple[int, int]:
    low, high = radius + 1, IMAGE_SIZE - radius - 2
    middle = IMAGE_SIZE // 2
    third = IMAGE_SIZE // 3
    x, y = rng.randint(low, high), rng.randint(low, high)
    if position == "on the left":
        x = rng.randint(low, max(low, third))
    elif position == "on the right":
        x = rng.randint(min(high, IMAGE_SIZE - third), high)
    elif position == "at the top":
        y = rng.randint(low, max(low, third))
    elif position == "at the bottom":
        y = rng.randint(min(high, IMAGE_SIZE - third), high)
    else:
        x = middle + rng.randint(-2, 2)
        y = middle + rng.randint(-2, 2)
    return x, y


def _polygon(cx: int, cy: int, r: float, points: int, start: float,
             inner: Optional[float] = None) -> List[Tuple[float, float]]:
    """Regular polygon (or star, with ``inner`` radius) around (cx, cy)."""
    corners = []
    steps = points * 2 if inner is not None else points
    for k in range(steps):
        angle = start + 2 * np.pi * k / steps
        radius = inner if inner is not None and k % 2 else r
        corners.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
    return corners


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int,
               colour: Tuple[int, ...], background: Tuple[int, ...]) -> None:
    """Draw one of ``SHAPES`` of radius ``r`` centred at (cx, cy) (the crescent's bite is
    painted in ``background``)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    thick = max(2, r // 3)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - r, cy - thick // 2, cx + r, cy + thick // 2), fill=colour)
        draw.rectangle((cx - thick // 2, cy - r, cx + thick // 2, cy + r), fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r, 5, -np.pi / 2, inner=r * 0.45), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=thick)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=colour)
    elif shape == "crescent":
        draw.ellipse(box, fill=colour)
        shift = max(2, r // 2)
        draw.ellipse((cx - r + shift, cy - r - 1, cx + r + shift, cy + r - 1), fill=background)
    elif shape == "arrow":
        draw.rectangle((cx - r, cy - thick // 2, cx, cy + thick // 2), fill=colour)
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r)], fill=colour)
    elif shape == "bar":
        draw.rectangle((cx - r, cy - thick // 2 - 1, cx + r, cy + thick // 2 + 1), fill=colour)
    elif shape == "frame":
        draw.rectangle(box, outline=colour, width=thick)
    else:
        raise ValueError(f'Unknown shape "{shape}"')


def _apply_fill(pixels: np.ndarray, mask: np.ndarray, fill: str, phase: int) -> None:
    """Stripes darken every other pair of rows of the object; dots lighten a grid of pixels."""
    if fill == "solid":
        return
    rows, cols = np.indices(mask.shape)
    if fill == "striped":
        pattern = ((rows + phase) // 2) % 2 == 0
        pixels[mask & pattern] = (pixels[mask & pattern] * 0.45).astype(pixels.dtype)
    elif fill == "dotted":
        pattern = ((rows + phase) % 3 == 0) & ((cols + phase) % 3 == 0)
        lighter = pixels[mask & pattern].astype(np.int32) + 110
        pixels[mask & pattern] = np.clip(lighter, 0, 255).astype(pixels.dtype)


def draw(rng: random.Random, obj: WorldObject, spec: WorldSpec = DEFAULT_SPEC) -> Image.Image:
    """A 32×32 RGB picture of ``obj``: scene colour, a few distractor dots, the shape in its
    (jittered) colour, its fill pattern, then pixel noise."""
    def jittered(rgb: Tuple[int, int, int], amount: int) -> Tuple[int, ...]:
        return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)

    background = jittered(SCENES[obj.scene], 10)
    colour = jittered(COLOURS[obj.colour], spec.jitter)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    canvas = ImageDraw.Draw(image)
    for _ in range(spec.distractors):
        x, y = rng.randrange(IMAGE_SIZE), rng.randrange(IMAGE_SIZE)
        canvas.point((x, y), fill=tuple(rng.randint(0, 255) for _ in range(3)))

    radius = rng.randint(5, 7) if obj.size == "small" else rng.randint(10, 13)
    cx, cy = _centre(rng, obj.position, radius)
    mask_image = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw_shape(ImageDraw.Draw(mask_image), obj.shape, cx, cy, radius, 255, 0)
    draw_shape(canvas, obj.shape, cx, cy, radius, colour, background)

    pixels = np.asarray(image, dtype=np.uint8).copy()
    mask = np.asarray(mask_image) > 0
    _apply_fill(pixels, mask, obj.fill, rng.randrange(4))
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, spec.noise,
                                                              (IMAGE_SIZE, IMAGE_SIZE, 1))
    tinted = pixels.astype(np.float32) * np.asarray(spec.tint, dtype=np.float32)
    noisy = tinted + noise.astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------- lexicon


def lexicon() -> List[Tuple[str, str]]:
    """(label, group) for every noun phrase the world can name: the outlier vocabulary.

    ``kind`` labels are colour–shape pairs (the class names); ``attributed`` ones add a size
    and/or fill ("small striped red star"), near neighbours of the classes; ``shape`` labels
    are a bare shape, and ``scene`` labels a background, farther from any class.
    """
    labels = [(kind_name(c, s), "kind") for c, s in all_kinds()]
    for colour, shape in all_kinds():
        for size in ("",) + SIZES:
            for fill in ("",) + FILLS:
                if size or fill:
                    words = " ".join(w for w in (size, fill, colour, shape) if w)
                    labels.append((words, "attributed"))
    labels += [(shape, "shape") for shape in SHAPES]
    labels += [(scene, "scene") for scene in SCENES]
    return labels
