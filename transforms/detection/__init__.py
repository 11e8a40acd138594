"""Face detection: the detector protocol, the Beam handler, one module per detector, their union.

``base``: the ``Detector`` and ``DetectorFactory`` protocols; ``handler``: the Beam handler (detect and
verify modes); ``mtcnn``: facenet-pytorch's MTCNN; ``fast_mtcnn``: the vectorized MTCNN;
``centerface``: CenterFace on onnxruntime; ``retinaface``: RetinaFace MobileNet-0.25 on onnxruntime;
``yunet``: YuNet (libfacedetection); ``haar``: OpenCV's profile-face cascade; ``union``: the
IoU union of detectors and ``merge_faces``; ``stack``: a run's detect and verify detectors.
"""

from transforms.detection.base import Detector, DetectorClass, DetectorFactory, Factory
from transforms.detection.centerface import (
    CENTERFACE,
    NOT_INSTALLED,
    CenterFaceDetector,
    CenterFaceSettings,
    centerface_available,
    centerface_info,
    centerface_model_path,
)
from transforms.detection.fast_mtcnn import FAST_MTCNN, FastMtcnnDetector, FastMtcnnSettings
from transforms.detection.haar import HAAR_PROFILE, HaarProfileDetector, HaarSettings, haar_info
from transforms.detection.handler import FaceDetectionHandler
from transforms.detection.mtcnn import MtcnnDetector, MtcnnSettings, mtcnn_info
from transforms.detection.retinaface import (
    RETINAFACE,
    RetinaFaceDetector,
    RetinaFaceSettings,
    retinaface_available,
    retinaface_info,
    retinaface_model,
)
from transforms.detection.stack import DetectorStack, detector_record
from transforms.detection.union import UnionDetector, UnionFactory, merge_faces, union_info
from transforms.detection.yunet import YUNET, YuNetDetector, YuNetSettings, yunet_available, yunet_info

__all__ = [
    "CENTERFACE", "FAST_MTCNN", "HAAR_PROFILE", "NOT_INSTALLED", "RETINAFACE", "YUNET",
    "CenterFaceDetector", "CenterFaceSettings", "Detector", "DetectorClass", "DetectorFactory", "DetectorStack",
    "FaceDetectionHandler", "Factory", "FastMtcnnDetector", "FastMtcnnSettings", "HaarProfileDetector",
    "HaarSettings", "MtcnnDetector", "MtcnnSettings", "RetinaFaceDetector", "RetinaFaceSettings",
    "UnionDetector", "UnionFactory", "YuNetDetector", "YuNetSettings",
    "centerface_available", "centerface_info", "centerface_model_path", "detector_record", "haar_info",
    "merge_faces", "mtcnn_info", "retinaface_available", "retinaface_info", "retinaface_model", "union_info",
    "yunet_available", "yunet_info",
]
