"""Where a request's video comes from, and what the server agrees to read (``VideoPolicy``).

A ``video_url`` part's URL may be
- ``file:///abs/path.mp4``: read only when the path, symlinks resolved, lies under one of the allowed folders
  (``--allowed-dir``); with none given every file URL is refused: the server never reads a path it was not
  told it may;
- ``data:video/mp4;base64,...``: decoded into a temporary file that is deleted once the video is tokenized;
- ``http(s)://...``: refused unless remote URLs are allowed (``--allow-remote-urls``); then downloaded with
  urllib into a temporary file, at most ``max_bytes``.
Each video must decode and last at most ``max_clips`` 2-second clips; every refusal is an ``APIError`` (400).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from divot.constants import CLIP_SECONDS, MAX_CLIPS
from divot.serve.errors import APIError

logger = logging.getLogger(__name__)

# Suffixes for decoded data URLs (PyAV reads the container from the bytes; the suffix only helps a reader).
SUFFIXES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
            "video/x-msvideo": ".avi", "video/avi": ".avi", "video/mpeg": ".mpg", "image/gif": ".gif"}


@dataclass(frozen=True)
class VideoPolicy:
    """What the server reads: files under ``allowed_dirs`` only, remote URLs only if ``allow_remote_urls``, at
    most ``max_bytes`` per uploaded / downloaded video, at most ``max_clips`` 2-second clips per video."""

    allowed_dirs: tuple[Path, ...] = ()
    allow_remote_urls: bool = False
    max_bytes: int = 100 * 2**20
    max_clips: int = MAX_CLIPS
    download_timeout: float = 30.0

    def __post_init__(self):
        folders = []
        for folder in self.allowed_dirs:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise ValueError(f"allowed video folder {folder} is not a directory")
            folders.append(path)
        object.__setattr__(self, "allowed_dirs", tuple(folders))
        for name in ("max_bytes", "max_clips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.download_timeout > 0:
            raise ValueError(f"download_timeout must be > 0 seconds, got {self.download_timeout!r}")


@contextmanager
def local_video(url: str, policy: VideoPolicy, param: str) -> Iterator[Path]:
    """A readable local file for ``url`` (see the module docstring), checked with ``check_video``; temporary
    files are deleted when the block ends. ``param`` names the request field in errors."""
    if not isinstance(url, str) or not url:
        raise APIError("a video_url part needs a non-empty url", param=param, code="invalid_video_url")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "file":
        path = allowed_file(url, policy, param)
        check_video(path, policy, param)
        yield path
        return
    if scheme == "data":
        data, suffix = decode_data_url(url, policy, param)
    elif scheme in ("http", "https"):
        data, suffix = download(url, policy, param)
    else:
        raise APIError(f"unsupported video URL {url[:60]!r}: expected file://, data:video/...;base64, or "
                       "http(s)://", param=param, code="invalid_video_url")
    handle, name = tempfile.mkstemp(prefix="divot-serve-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        check_video(Path(name), policy, param)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def allowed_file(url: str, policy: VideoPolicy, param: str) -> Path:
    """The local path of a ``file://`` URL, refused unless it lies under an allowed folder (symlinks resolved)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise APIError(f"file URLs must name a local path (file:///abs/path), got host {parts.netloc!r}",
                       param=param, code="invalid_video_url")
    path = Path(urllib.request.url2pathname(parts.path))
    if not path.is_absolute():
        raise APIError(f"file URLs need an absolute path, got {url!r}", param=param, code="invalid_video_url")
    if not policy.allowed_dirs:
        raise APIError("this server reads no local files (start it with --allowed-dir DIR to allow a folder); "
                       "send the video as a data:video/mp4;base64 URL instead", status=403, param=param,
                       code="file_access_denied")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(folder) for folder in policy.allowed_dirs):
        raise APIError(f"{path} is outside the folders this server may read (--allowed-dir)", status=403,
                       param=param, code="file_access_denied")
    if not resolved.is_file():
        raise APIError(f"video file {path} does not exist", param=param, code="video_not_found")
    return resolved


def decode_data_url(url: str, policy: VideoPolicy, param: str) -> tuple[bytes, str]:
    """The bytes and a file suffix of a ``data:video/...;base64,...`` URL."""
    header, comma, payload = url.partition(",")
    fields = header[len("data:"):].split(";")
    mime = fields[0].strip().lower()
    if not comma or "base64" not in fields[1:]:
        raise APIError("a data URL video must be base64: data:video/mp4;base64,...", param=param,
                       code="invalid_video_url")
    if not (mime.startswith("video/") or mime == "image/gif"):
        raise APIError(f"a data URL video needs a video/* media type, got {mime or 'none'!r}", param=param,
                       code="invalid_video_url")
    if len(payload) * 3 // 4 > policy.max_bytes:
        raise APIError(f"the video is larger than this server's limit of {policy.max_bytes} bytes", status=413,
                       param=param, code="video_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise APIError(f"the data URL is not valid base64: {error}", param=param, code="invalid_video_url") from None
    return data, SUFFIXES.get(mime, ".mp4")


def download(url: str, policy: VideoPolicy, param: str) -> tuple[bytes, str]:
    """The bytes of a remote video (at most ``policy.max_bytes``), if remote URLs are allowed."""
    if not policy.allow_remote_urls:
        raise APIError("remote video URLs are refused (start the server with --allow-remote-urls to allow them); "
                       "send the video as a data:video/mp4;base64 URL instead", param=param,
                       code="remote_url_refused")
    logger.info("downloading %s", url)
    try:
        with urllib.request.build_opener(_HTTPOnlyRedirects).open(url, timeout=policy.download_timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > policy.max_bytes:
                raise APIError(f"the video is larger than this server's limit of {policy.max_bytes} bytes",
                               status=413, param=param, code="video_too_large")
            data = response.read(policy.max_bytes + 1)
            mime = response.headers.get_content_type()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise APIError(f"could not download {url}: {error}", param=param, code="video_download_failed") from None
    if len(data) > policy.max_bytes:
        raise APIError(f"the video is larger than this server's limit of {policy.max_bytes} bytes", status=413,
                       param=param, code="video_too_large")
    return data, SUFFIXES.get(mime, Path(urlsplit(url).path).suffix[:8] or ".mp4")


class _HTTPOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (urllib's own handler also follows ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-HTTP URL refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_video(path: Path, policy: VideoPolicy, param: str) -> None:
    """Refuse a file that does not decode or that holds more than ``policy.max_clips`` 2-second clips."""
    from divot.data.sampling import sample_clip_indices
    from divot.data.video import VideoDecodeError, probe_video

    try:
        info = probe_video(path)
        # One clip over the limit is enough to tell: the sampler returns at most max_clips + 1 clips.
        clips = len(sample_clip_indices(info.num_frames, info.fps, max_clips=policy.max_clips + 1))
    except (VideoDecodeError, FileNotFoundError, OSError, ValueError, RuntimeError) as error:
        raise APIError(f"could not read the video: {error}", param=param, code="invalid_video") from None
    if clips > policy.max_clips:
        raise APIError(f"the video lasts {info.num_frames / info.fps:.1f} s; this server takes at most "
                       f"{policy.max_clips} clips of {CLIP_SECONDS:g} s ({policy.max_clips * CLIP_SECONDS:g} s, "
                       "--max-clips)", param=param, code="video_too_long")
