"""The detection handler's model loading: steps that run an equal detector share one per process."""

from __future__ import annotations

import gc
import pickle
import weakref

from transforms.detection import FaceDetectionHandler, Factory, HaarProfileDetector, HaarSettings, UnionFactory


def test_steps_with_equal_factories_share_one_detector_per_process() -> None:
    """The two verification steps get the pipeline's verify handler as pickled copies (as a worker
    unpickles each step): both load the very same detector; other settings, another run's key, or
    no key load their own."""
    factory = UnionFactory([Factory(HaarProfileDetector, HaarSettings(min_face_size=24))])
    first, second = (pickle.loads(pickle.dumps(FaceDetectionHandler(factory, 4, 10**6, mode="verify",
                                                                    shared_key="run-1")))
                     for _ in range(2))
    detector = first.load_model()
    assert second.load_model() is detector
    other = FaceDetectionHandler(Factory(HaarProfileDetector, HaarSettings(min_face_size=30)), 4, 10**6,
                                 shared_key="run-1")
    assert other.load_model() is not detector
    # Another run's steps, or a step without a key, build their own.
    assert FaceDetectionHandler(factory, 4, 10**6, shared_key="run-2").load_model() is not detector
    assert FaceDetectionHandler(factory, 4, 10**6).load_model() is not detector
    # Nothing else holds on to a detector no step uses any more: it is freed, and the next load
    # builds a new one.
    gone = weakref.ref(detector)
    del detector
    gc.collect()
    assert gone() is None
    assert first.load_model().detect([]) == []
