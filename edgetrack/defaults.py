"""The defaults of edgetrack's settings, each in one place: the command-line options, the library signatures and
the training config (``distill.config.TrainConfig``) all read them from here.

Torch-free and import-free, so the base install and every ``--help`` read it without loading a stage.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------------- running

#: the precisions a bundle can hold, fp32 first: the one every bundle has
PRECISIONS = ("fp32", "fp16", "int8")
PRECISION = "fp32"
#: what ``open_backend`` can run a bundle on; ``auto`` picks TensorRT engines when built for this machine
BACKENDS = ("auto", "onnxruntime", "tensorrt", "opencv")
BACKEND = "auto"
#: ONNX Runtime's execution providers
DEVICES = ("cpu", "cuda", "tensorrt")
DEVICE = "cpu"

# ------------------------------------------------------------------------------------------------ evaluating

#: the dataset layouts ``eval`` reads; ``auto`` detects the layout, ``otb`` is OTB/VOT folders and videos
DATASET_LAYOUTS = ("auto", "otb", "got10k", "lasot", "trackingnet", "uav123")
DATASET_LAYOUT = "auto"
#: one-pass evaluation, or VOT's supervised protocol (re-initialised after each failure)
PROTOCOLS = ("ope", "vot")
PROTOCOL = "ope"
#: e-LAE's permitted latency of ``eval --realtime``, in frame periods: 0 is LAE's strict rule
PERMITTED_LATENCY = 0.0

# ----------------------------------------------------------------------------------------- building models

#: the ONNX opset of an export
OPSET = 17
#: what builds a precision
BUILD_BACKENDS = ("auto", "onnxruntime", "tensorrt")
#: the accuracy gate: how far a built precision's mean AUC may fall below fp32's
MAX_AUC_DROP = 0.02
#: the search crops int8 calibration records, spread over the calibration sequences
CALIB_FRAMES = 200
#: how ONNX Runtime's int8 calibration turns the recorded activations into ranges
CALIB_METHODS = ("minmax", "entropy", "percentile")
CALIB_METHOD = "minmax"
#: what ``edgetrack bench`` can build and time on, and what it does unless told
BENCH_BACKENDS = ("onnxruntime", "tensorrt")
BENCH_DEFAULT_BACKENDS = ("onnxruntime",)
#: timed passes over the dataset per bench cell; the fps is their median
BENCH_ROUNDS = 3

# ---------------------------------------------------------------------------------------------- training

EPOCHS = 10
STEPS_PER_EPOCH = 200
#: steps between the checkpoints written inside an epoch (0: at epoch ends only)
CHECKPOINT_EVERY = 100
#: pairs per step and per process
BATCH_SIZE = 16
SEED = 0
OPTIMIZERS = ("sgd", "adamw")
OPTIMIZER = "sgd"
#: the peak learning rate
LR = 0.01
#: DataLoader worker processes (0: make pairs in the training process, the fastest on 2 CPU cores)
WORKERS = 0

# ---------------------------------------------------------------------------------------------- student search

#: teacher parameters / student parameters the search aims at, and the relative miss of it that costs nothing
SEARCH_TARGET_COMPRESSION = 8.0
SEARCH_TOLERANCE = 0.1
#: policy updates, and students sampled and scored per update
SEARCH_EPISODES = 12
SEARCH_STUDENTS_PER_EPISODE = 4
#: distillation steps, and pairs per step, that score each sampled student
SEARCH_PROXY_STEPS = 40
SEARCH_PROXY_BATCH_SIZE = 16

# ---------------------------------------------------------------------------------------------- tuning

#: trials of ``edgetrack tune`` in all (the bundle's own values are the first), and the seed of its TPE sampler
TUNE_TRIALS = 40
TUNE_SEED = 0
#: the ranges ``edgetrack tune`` searches, (low, high) each
TUNE_PENALTY_K = (0.0, 0.5)
TUNE_WINDOW_INFLUENCE = (0.0, 0.8)
TUNE_LR = (0.0, 1.0)
