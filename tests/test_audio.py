"""Audio for STiCA: decoding real containers, alignment, GDT's log filterbank, missing audio reported."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from videozoo.data.audio import (
    NoAudioError,
    VolumeJitter,
    audio_spectrogram,
    has_audio,
    load_audio_segment,
    log_filterbank,
)
from videozoo.data.decode import VideoDecodeError
from videozoo.data.synthetic import write_video


def reference_logfbank(signal: np.ndarray, rate: int = 24000, nfilt: int = 257, nfft: int = 1024) -> np.ndarray:
    """python_speech_features.logfbank(signal, rate, winlen=0.02, winstep=0.01, nfilt, nfft), which GDT calls,
    written out step by step with loops (float64) -> (nfilt, frames)."""
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])  # pre-emphasis
    frame_len, step = int(0.02 * rate + 0.5), int(0.01 * rate + 0.5)
    n = len(signal)
    frames = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / step)
    padded = np.concatenate([signal, np.zeros((frames - 1) * step + frame_len - n)])
    windows = np.stack([padded[i * step : i * step + frame_len] for i in range(frames)])
    power = np.abs(np.fft.rfft(windows, nfft)) ** 2 / nfft
    mel = np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), nfilt + 2)
    edges = np.floor((nfft + 1) * 700 * (10 ** (mel / 2595) - 1) / rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(edges[j]), int(edges[j + 1])):
            bank[j, i] = (i - edges[j]) / (edges[j + 1] - edges[j])
        for i in range(int(edges[j + 1]), int(edges[j + 2])):
            bank[j, i] = (edges[j + 2] - i) / (edges[j + 2] - edges[j + 1])
    energy = power @ bank.T
    return np.log(np.where(energy == 0, np.finfo(float).eps, energy)).T


def test_filterbank_shape_257_by_99_per_second() -> None:
    wave = torch.randn(24000) * 0.1
    assert log_filterbank(wave).shape == (1, 257, 99)
    assert log_filterbank(torch.randn(48000)).shape == (1, 257, 199)  # GDT's 100 * seconds - 1
    assert log_filterbank(torch.randn(3, 24000)).shape == (3, 257, 99)


@pytest.mark.parametrize("length", [300, 24000, 24123])
def test_filterbank_matches_written_out_formula(length: int) -> None:
    rng = np.random.default_rng(length)
    int16 = np.round(rng.normal(0, 3000, length)).clip(-32768, 32767)  # GDT feeds int16 sample values
    expected = reference_logfbank(int16)
    ours = log_filterbank(torch.from_numpy(int16 / 32768.0))[0].double().numpy()  # float wave, default pcm_scale
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=2e-4)
    empty = (expected < -36).all(axis=1)  # mel filters narrower than an FFT bin: log(eps) forever
    assert empty.sum() == 38 and np.allclose(ours[empty], np.log(np.finfo(float).eps))


def test_no_audio_is_an_error_not_silence(media: dict[str, Path]) -> None:
    path = media["mp4"]
    assert not has_audio(path)
    with pytest.raises(NoAudioError) as info:
        load_audio_segment(path, 0.0, 1.0)
    assert isinstance(info.value, VideoDecodeError) and info.value.path == str(path)
    assert "no audio stream" in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))  # crosses DataLoader worker boundaries intact
    assert type(again) is NoAudioError and again.path == str(path) and str(again) == str(info.value)
    with pytest.raises(NoAudioError):
        audio_spectrogram(path, 0.0)


@pytest.mark.parametrize("key", ["avi", "mkv"])  # MP3 44.1 kHz stereo in AVI; Opus 48 kHz mono in Matroska
def test_real_media_audio(media: dict[str, Path], key: str) -> None:
    path = media[key]
    assert has_audio(path)
    wave = load_audio_segment(path, 1.0, 1.0)
    assert wave.shape == (24000,) and wave.dtype == torch.float32
    assert torch.isfinite(wave).all() and wave.std() > 1e-3 and wave.abs().max() <= 1.5
    spec = audio_spectrogram(path, 1.0, 1.0, volume_jitter=VolumeJitter())
    assert spec.shape == (1, 257, 99) and torch.isfinite(spec).all()
    assert spec.max() > 5  # int16-scaled log energies, as GDT's
    tail = load_audio_segment(path, 6.2, 1.0)  # the AVI's audio ends at ~6.56 s: zero-padded, still 1 s long
    assert tail.shape == (24000,)


def test_window_after_the_end_raises(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no audio"):
        load_audio_segment(media["avi"], 60.0, 1.0)


def test_alignment_and_resampling(tmp_path: Path) -> None:
    """Silence for 1 s, then 440 Hz: a window from 0.75 s at 24 kHz has its onset 0.25 s in, and its pitch."""
    rate = 16000
    t = np.arange(2 * rate) / rate
    wave = np.where(t >= 1.0, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    path = write_video(
        tmp_path / "onset.mp4", torch.full((20, 3, 32, 32), 90, dtype=torch.uint8), fps=10, audio=wave, sample_rate=rate
    )
    out = load_audio_segment(path, 0.75, 0.5, 24000)
    assert out.shape == (12000,)
    onset = int((out.abs() > 0.05).nonzero()[0])
    assert abs(onset - 6000) <= 24 * 5  # within 5 ms (AAC priming is undone by the decoder)
    tone = out[7000:]
    peak_hz = float(torch.fft.rfft(tone * torch.hann_window(len(tone))).abs().argmax()) * 24000 / len(tone)
    assert peak_hz == pytest.approx(440, abs=6)


def test_volume_jitter_range() -> None:
    jitter = VolumeJitter(0.9, 1.1)
    wave = torch.ones(10)
    gains = torch.tensor([float(jitter(wave)[0]) for _ in range(500)])
    assert gains.min() >= 0.9 and gains.max() <= 1.1 and gains.mean() == pytest.approx(1.0, abs=0.02)
