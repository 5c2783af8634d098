"""The synthetic shapes world (DESIGN section 9): clips, stories, question files and pixel measurements."""

from divot.data.shapes.generate import generate_dataset
from divot.data.shapes.measure import (
    ClipMeasurement,
    background_colour,
    classify_motion,
    dominant_colour,
    mask_iou,
    measure_clip,
    object_mask,
    shape_label,
)
from divot.data.shapes.story import StorySpec, render_story, sample_story
from divot.data.shapes.world import (
    COLOUR_RGB,
    COLOURS,
    HELD_OUT_COMBOS,
    MOTION_WORDS,
    MOTIONS,
    SHAPES,
    SPLITS,
    ClipSpec,
    ObjectSpec,
    parse_caption,
    render_clip,
    sample_spec,
    split_combos,
)

__all__ = [
    "COLOURS", "COLOUR_RGB", "HELD_OUT_COMBOS", "MOTIONS", "MOTION_WORDS", "SHAPES", "SPLITS",
    "ClipMeasurement", "ClipSpec", "ObjectSpec", "StorySpec",
    "background_colour", "classify_motion", "dominant_colour", "generate_dataset", "mask_iou", "measure_clip",
    "object_mask", "render_clip", "render_story", "parse_caption",
    "sample_spec", "sample_story", "shape_label", "split_combos",
]
