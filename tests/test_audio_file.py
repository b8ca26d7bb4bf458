"""Files the user opens or drops in the window: what the bubble shows, and what is refused at once."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from aura_model.errors import AuraError
from app.audio_file import DISPLAY_MAX_S, is_audio_file, read_preview


def test_a_stereo_file_is_shown_mono_at_its_own_rate(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(str(path), np.stack([np.ones(800), -np.ones(800)], axis=1).astype(np.float32) * 0.5, 8000)
    preview = read_preview(path)
    assert preview.sample_rate == 8000 and preview.samples.shape == (800,)
    assert np.allclose(preview.samples, 0.0)


def test_a_long_file_is_shown_up_to_the_display_limit(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros(int((DISPLAY_MAX_S + 5) * 1000), np.float32), 1000)
    assert len(read_preview(path).samples) == int(DISPLAY_MAX_S * 1000)


@pytest.mark.timeout(60)
def test_a_dropped_pipe_is_refused_at_once(tmp_path):
    fifo = tmp_path / "question.wav"
    os.mkfifo(fifo)  # nobody writes: reading it would block the window's thread for ever
    assert is_audio_file(fifo)
    with pytest.raises(AuraError, match="Cannot open question.wav: not a regular file"):
        read_preview(fifo)


def test_a_missing_file_names_itself(tmp_path):
    with pytest.raises(AuraError, match="Cannot open gone.wav: audio file not found"):
        read_preview(tmp_path / "gone.wav")
