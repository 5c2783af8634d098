"""Constants shared across the toolkit: the only place they live."""

# Clips (DESIGN section 2): 2 seconds, 16 dense frames at 8 fps; the tokenizer sees 5 sparse frames.
CLIP_SECONDS = 2.0
DENSE_FPS = 8
DENSE_FRAMES = 16
SPARSE_INDICES = (0, 4, 8, 12, 15)
NUM_SPARSE_FRAMES = len(SPARSE_INDICES)
MAX_CLIPS = 20
FRAME_SIZE = 256

# Pixels: frames live in [-1, 1] (mean 0.5, std 0.5 on [0, 1]).
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)

# OpenCLIP / OpenAI CLIP normalisation for the frame encoder.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Language side (DESIGN section 6).
IGNORE_INDEX = -100
IMG_START, IMG_END = "<img>", "</img>"
VID_START, VID_END = "<vid>", "</vid>"
FRAME_START, FRAME_END = "<frame>", "</frame>"
NUM_FRAME_TOKENS = 256  # <frame_00000> .. <frame_00255>; num_queries of them are used per clip


def frame_token(i: int) -> str:
    """The i-th frame placeholder token, e.g. ``<frame_00007>``."""
    return f"<frame_{i:05d}>"


SPECIAL_TOKENS = [IMG_START, IMG_END, VID_START, VID_END, FRAME_START, FRAME_END] + [
    frame_token(i) for i in range(NUM_FRAME_TOKENS)
]

# Video file extensions the folder loaders look for.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif", ".m4v")
