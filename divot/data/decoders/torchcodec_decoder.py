"""torchcodec backend (PyTorch's FFmpeg decoder, where it is installed and finds FFmpeg's shared libraries).

``VideoDecoder`` opens the file once in exact seek mode (it scans the packets for the frame index), applies
the file's rotation, resizes while decoding (``transforms=[Resize((h, w))]``, bilinear with antialiasing) and
returns frames at any indices (``get_frames_at``). The native size, needed to choose the output size, is read
from the header first (``seek_mode="approximate"``: no scan, no decoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from divot.data.decoders.base import VideoDecodeError, VideoFile, VideoInfo, check_fps, decode_size


class TorchCodecVideo(VideoFile):
    backend = "torchcodec"

    def __init__(self, path: Path, short_side: int | None = None):
        from torchcodec.decoders import VideoDecoder

        super().__init__(path, None)
        header = VideoDecoder(str(path), seek_mode="approximate").metadata  # sizes after rotation
        if not header.width or not header.height:
            raise VideoDecodeError(f"video file {path} has no video stream with a frame size")
        self.requested_size = decode_size(header.height, header.width, short_side)
        transforms = None
        if self.requested_size is not None:
            from torchcodec.transforms import Resize

            transforms = [Resize(self.requested_size)]
        self._decoder = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact", num_ffmpeg_threads=0,
                                     transforms=transforms)
        meta = self._decoder.metadata
        if not meta.num_frames:
            raise VideoDecodeError(f"video file {path} has no frames")
        self.info = VideoInfo(path=path, num_frames=int(meta.num_frames), fps=check_fps(path, meta.average_fps),
                              width=int(meta.width), height=int(meta.height))

    def _read(self, indices: np.ndarray) -> np.ndarray:
        return self._decoder.get_frames_at(indices.tolist()).data.numpy()  # (n, h, w, 3) uint8

    def close(self) -> None:
        self._decoder = None
