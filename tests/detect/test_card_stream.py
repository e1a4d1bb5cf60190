"""The detector on the embedded synthetic card stream, as the daemon's default
configuration builds it (what ``scripts/run`` shows a new user).

Refits are applied after each batch so the figures are reproducible.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.service.config import load_config
from streamgmm.service.detector_config import detector_params
from streamgmm.stream.decode import Decoder
from streamgmm.stream.records import Record
from streamgmm.synth import generate_events

pytestmark = pytest.mark.timeout(120)


def test_fraud_recall_on_the_card_stream():
    # The stream starts at midnight, so the 1,000-event warm-up covers a night and
    # a morning; the evening traffic that follows scores below the warm-up's
    # threshold. Held out of learning as if it were a burst, it kept the model at
    # the warm-up's picture for 6,000 events and then left stale low scores in the
    # threshold window for 5,000 more: recall 0.75 (measured; 0.86 learned at once).
    events = list(generate_events(30_000, seed=0))
    encode = msgspec.json.Encoder().encode
    cfg = load_config(None, env={})
    decoder = Decoder(cfg.features)
    X = decoder.decode([Record("g", 0, i, None, encode(e)) for i, e in enumerate(events)]).X
    fraud = np.array([bool(e["is_fraud"]) for e in events])
    det = AnomalyDetector(**detector_params(cfg.detector, decoder.feature_names))
    flags, scored = np.zeros(len(fraud), bool), np.zeros(len(fraud), bool)
    for i in range(0, len(fraud), 500):
        out = det.process(X[i:i + 500])
        det.wait_for_refit(timeout=30)
        flags[i:i + 500], scored[i:i + 500] = out.is_anomaly, np.isfinite(out.score)
    det.close()
    recall = flags[scored & fraud].mean()
    precision = fraud[flags].mean()
    msg = f"recall {recall:.3f}, precision {precision:.3f} on {int((scored & fraud).sum())} fraud"
    assert recall >= 0.8, msg
    assert flags[scored].mean() <= 2 * det.contamination, msg
