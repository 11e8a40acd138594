"""Face detection: the detector protocol, the Beam handler, one module per detector, their union.

``mtcnn``: facenet-pytorch's MTCNN, the handler and the protocols; ``fast_mtcnn``: the vectorized
MTCNN; ``centerface``: CenterFace on onnxruntime; ``haar``: OpenCV's profile-face cascade and the
IoU union of detectors.
"""

from transforms.detection.centerface import (
    CENTERFACE,
    NOT_INSTALLED,
    CenterFaceDetector,
    CenterFaceFactory,
    CenterFaceSettings,
    centerface_available,
    centerface_info,
    centerface_model_path,
)
from transforms.detection.fast_mtcnn import FAST_MTCNN, FastMtcnnDetector, FastMtcnnFactory, FastMtcnnSettings
from transforms.detection.haar import (
    HAAR_PROFILE,
    HaarProfileDetector,
    HaarProfileFactory,
    HaarSettings,
    UnionDetector,
    UnionFactory,
    haar_info,
    merge_faces,
    union_info,
)
from transforms.detection.mtcnn import (
    Detector,
    DetectorFactory,
    FaceDetectionHandler,
    MtcnnDetector,
    MtcnnFactory,
    MtcnnSettings,
    mtcnn_info,
)

__all__ = [
    "CENTERFACE", "FAST_MTCNN", "HAAR_PROFILE", "NOT_INSTALLED",
    "CenterFaceDetector", "CenterFaceFactory", "CenterFaceSettings", "Detector", "DetectorFactory",
    "FaceDetectionHandler", "FastMtcnnDetector", "FastMtcnnFactory", "FastMtcnnSettings", "HaarProfileDetector",
    "HaarProfileFactory", "HaarSettings", "MtcnnDetector", "MtcnnFactory", "MtcnnSettings", "UnionDetector",
    "UnionFactory", "centerface_available", "centerface_info", "centerface_model_path", "haar_info",
    "merge_faces", "mtcnn_info", "union_info",
]
