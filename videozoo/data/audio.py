"""Audio of a clip for STiCA/GDT (Patrick, Asano et al., ICCV 2021): decode, mono, resample, log filterbank.

Decoding uses PyAV: torchaudio 2.11 has dropped its FFmpeg/SoX readers (``torchaudio.load`` now needs torchcodec),
while PyAV reads every container here (MP3 in AVI, Opus in Matroska, AAC in MP4). Resampling uses
``torchaudio.functional.resample`` (windowed sinc).

The features reproduce GDT's ``datasets/audio_utils.py::get_spec`` with ``aud_spec_type=2`` (STiCA's setting),
which calls ``python_speech_features.logfbank(wav, 24000, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024)`` on
int16 samples. That is: pre-emphasis 0.97; 480-sample frames every 240 samples, rectangular window, the tail
zero-padded to a whole frame; power spectrum |rfft(frame, 1024)|^2 / 1024; 257 *mel-spaced triangular* filters over
0-12 kHz (not a linear 257-bin spectrogram, even though 257 = 1024/2 + 1); zeros replaced by float64 eps; natural
log. One second (24,000 samples) gives 1 + ceil((24000 - 480) / 240) = 99 frames. With 257 mel filters on
513 FFT bins, the lowest filters fall between FFT bins and are empty: those rows are log(eps) = -36.04 always.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio.functional as AF
from einops import rearrange

from videozoo.data.decode import VideoDecodeError, probe_video

FLOAT64_EPS = float(np.finfo(np.float64).eps)  # what python_speech_features puts in place of zero energies
PCM_SCALE = 32768.0  # GDT feeds int16 sample values, not [-1, 1] floats; this scale gives the same log levels


class NoAudioError(VideoDecodeError):
    """The file has no audio stream: STiCA-style training must skip it (``scan`` filters such videos)."""

    def __init__(
        self,
        path: str | Path,
        cause: object = "no audio stream (audio-visual training must skip it)",
    ) -> None:
        super().__init__(path, cause)

    def __reduce__(self) -> tuple:  # survive pickling out of DataLoader / pool workers with path and message intact
        return type(self), (self.path, self.cause)


def has_audio(path: str | Path) -> bool:
    """True when the container holds at least one audio stream."""
    with _open(path) as container:
        return len(container.streams.audio) > 0


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, f"{type(err).__name__}: {err}") from err


def _origin_seconds(container: av.container.InputContainer, path: str | Path) -> float:
    """Time of the first video frame: audio offsets are counted from it, so frame i <-> i / fps seconds.

    The video stream is the one the frame readers read (:attr:`~videozoo.data.VideoInfo.stream_index`), which
    in a file with several video streams need not be the first.
    """
    stream = container.streams.audio[0]
    if container.streams.video:
        try:
            stream = container.streams[probe_video(path).stream_index]  # cached: the frame reader probed it
        except VideoDecodeError:  # no decodable video: the first video stream's clock still places the audio
            stream = container.streams.video[0]
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _decode_mono(container, stream, start: float, stop: float) -> tuple[np.ndarray, float]:
    """Mono float32 samples at the native rate from at or before ``start`` to ``stop`` s, and the first one's time."""
    # seek half a second early: MP3 frames lean on earlier ones (bit reservoir), and seeks land on packet edges
    container.seek(max(0, int((start - 0.5) / stream.time_base)), stream=stream, backward=True)
    to_float = av.AudioResampler(format="fltp")  # planar float whatever the codec gives; layout and rate kept
    rate = stream.codec_context.sample_rate
    chunks, first, count = [], None, 0
    for frame in container.decode(stream):
        for out in to_float.resample(frame):
            if first is None:
                first = float(out.time) if out.time is not None else 0.0
            chunks.append(out.to_ndarray().mean(axis=0))  # (channels, n) -> (n,): ffmpeg's stereo downmix
            count += chunks[-1].shape[0]
        if first is not None and first + count / rate >= stop:
            break
    if first is None:
        return np.zeros(0, np.float32), start
    return np.concatenate(chunks).astype(np.float32), first


def load_audio_segment(path: str | Path, start_s: float, duration_s: float, sample_rate: int = 24000) -> torch.Tensor:
    """Mono float waveform (samples,) in [-1, 1] of ``duration_s`` seconds from ``start_s``, at ``sample_rate``.

    ``start_s`` counts from the first video frame, so the audio of frames [i, i + n) at ``fps`` is
    ``load_audio_segment(path, i / fps, n / fps)``. Always ``round(duration_s * sample_rate)`` samples: a window
    running past the end of the track is zero-padded at the end (GDT instead slides the window back); a window
    entirely after the end raises ``ValueError``. No audio stream raises :class:`NoAudioError`.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise NoAudioError(path)
        stream = container.streams.audio[0]
        native = stream.codec_context.sample_rate
        start = _origin_seconds(container, path) + start_s
        margin = 0.05  # decoded on both sides so the resampling filter sees real signal at the edges
        wave, first = _decode_mono(container, stream, start - margin, start + duration_s + margin)
    if start >= first + len(wave) / native:
        raise ValueError(f"{path}: no audio in [{start_s:.3f}, {start_s + duration_s:.3f}] s (the track ends earlier)")
    lo = max(0, round((start - margin - first) * native))
    hi = round((start + duration_s + margin - first) * native)
    segment = torch.from_numpy(wave[lo:hi].copy())
    if native != sample_rate:
        segment = AF.resample(segment, native, sample_rate)
    length = round(duration_s * sample_rate)
    skip = round((start - first - lo / native) * sample_rate)  # samples of the segment before ``start``
    if skip < 0:  # the window starts before the first audio sample (audio stream starting late)
        segment, skip = torch.cat([torch.zeros(-skip), segment]), 0
    out = segment[skip : skip + length]
    return torch.nn.functional.pad(out, (0, length - out.numel()))


def mel_filterbank(n_bins: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_bins, n_fft // 2 + 1) triangular mel filters, python_speech_features' ``get_filterbanks`` rule:
    edges at floor((n_fft + 1) * mel2hz(linspace(0, hz2mel(sr / 2), n_bins + 2)) / sr), mel = 2595 log10(1 + f/700)."""
    high_mel = 2595 * math.log10(1 + (sample_rate / 2) / 700)
    hz = 700 * (10 ** (torch.linspace(0, high_mel, n_bins + 2, dtype=torch.float64) / 2595) - 1)
    edges = torch.floor((n_fft + 1) * hz / sample_rate)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_bins, 1) each
    i = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[None]
    rising = (i - left) / (centre - left).clamp_min(1)
    falling = (right - i) / (right - centre).clamp_min(1)
    return torch.where((i >= left) & (i < centre), rising, 0.0) + torch.where((i >= centre) & (i < right), falling, 0.0)


def log_filterbank(
    wave: torch.Tensor,
    *,
    sample_rate: int = 24000,
    win_ms: float = 20,
    hop_ms: float = 10,
    n_fft: int = 1024,
    n_bins: int = 257,
    preemphasis: float = 0.97,
    pcm_scale: float = PCM_SCALE,
) -> torch.Tensor:
    """STiCA/GDT's log mel filterbank: (samples,) -> (1, n_bins, frames); (N, samples) -> (N, n_bins, frames).

    1 s at 24 kHz -> (1, 257, 99). ``pcm_scale`` multiplies a [-1, 1] wave into int16 units as GDT's were
    (use 1.0 for a wave already in those units). See the module docstring for the exact recipe.
    """
    x = torch.as_tensor(wave, dtype=torch.float64) * pcm_scale
    squeeze = x.dim() == 1
    x = rearrange(x, "... n -> (...) n")  # (N, samples)
    x = torch.cat([x[:, :1], x[:, 1:] - preemphasis * x[:, :-1]], dim=1)
    frame_len = math.floor(win_ms * sample_rate / 1000 + 0.5)  # round half up, as the reference
    hop = math.floor(hop_ms * sample_rate / 1000 + 0.5)
    n = x.shape[1]
    frames = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / hop)
    x = torch.nn.functional.pad(x, (0, (frames - 1) * hop + frame_len - n))
    windows = x.unfold(1, frame_len, hop)  # (N, frames, frame_len); rectangular window
    power = torch.fft.rfft(windows, n=n_fft).abs().square() / n_fft  # (N, frames, n_fft // 2 + 1)
    energy = power @ mel_filterbank(n_bins, n_fft, sample_rate).T  # (N, frames, n_bins)
    spec = torch.where(energy == 0, FLOAT64_EPS, energy).log().transpose(1, 2).float()  # (N, n_bins, frames)
    return spec if not squeeze else spec[:1]


class VolumeJitter:
    """Scale a waveform by U(low, high) (STiCA/GDT: 0.9-1.1), drawn per call from torch's generator."""

    def __init__(self, low: float = 0.9, high: float = 1.1) -> None:
        self.low, self.high = low, high

    def __repr__(self) -> str:
        return f"VolumeJitter(low={self.low}, high={self.high})"

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        return wave * float(torch.empty(()).uniform_(self.low, self.high))


def audio_spectrogram(
    path: str | Path,
    start_s: float,
    duration_s: float = 1.0,
    *,
    sample_rate: int = 24000,
    volume_jitter: VolumeJitter | None = None,
) -> torch.Tensor:
    """Decode + (jitter) + log filterbank: STiCA's audio input (1, 257, 100 * seconds - 1) for a clip."""
    wave = load_audio_segment(path, start_s, duration_s, sample_rate)
    if volume_jitter is not None:
        wave = volume_jitter(wave)
    return log_filterbank(wave, sample_rate=sample_rate)
