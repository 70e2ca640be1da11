"""Compare NeuralKit, Keras (TensorFlow backend) and PyTorch on the MNIST reference network.

All three train the same network on the same CPU and data: Conv2D(32, 3x3, relu),
MaxPooling2D(2x2), Dropout(0.25), Conv2D(64, 3x3, relu), MaxPooling2D(2x2),
Dropout(0.25), Flatten, Dense(256, relu), Dense(10, softmax), 431,242 parameters.
Training uses Adam (learning rate 1e-3, betas 0.9/0.999, epsilon 1e-7), batch size 250
and sparse categorical crossentropy. Validation takes the last 20% of the training
samples before shuffling, and the rest is shuffled every epoch. The images come from
the gzip IDX files in Data/mnist and are scaled to [0, 1].

Keras and PyTorch compute in float32. NeuralKit runs as "neuralkit" in float32 and, on
CPUs with AVX512_BF16, also as "neuralkit-bfloat16" with `--precision bfloat16`, which
rounds the inputs of its matrix products to bfloat16 and sums in float32.

Each framework runs in its own child process, so that its peak memory is its own.
Scripts/benchmark sets up the venv and builds NeuralKit before running this file:

    Scripts/benchmark --epochs 3 --rounds 2 --single-thread --machine-peak

Timing: an epoch ends when the framework reports its end, after the validation pass.
Epoch k (k > 1) lasts from the end of epoch k-1 to the end of epoch k, and epoch 1
from the start of training, so the first epoch contains each framework's warm-up
(graph tracing in Keras) and is reported separately. The steady epoch time is the
median of epochs 2 to N. Loading the data and the framework is the "startup" time.
"""

import argparse
import dataclasses
import functools
import gzip
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIRECTORY = REPOSITORY_ROOT / "Data" / "mnist"
DEFAULT_NEURALKIT = REPOSITORY_ROOT / ".build" / "release" / "neuralkit"

FRAMEWORKS = ("neuralkit", "neuralkit-bfloat16", "keras", "pytorch")
FRAMEWORK_TITLES = {
    "neuralkit": "NeuralKit", "neuralkit-bfloat16": "NeuralKit bfloat16", "keras": "Keras", "pytorch": "PyTorch",
}
# The `neuralkit mnist --precision` value of each NeuralKit framework.
NEURALKIT_PRECISIONS = {"neuralkit": "float32", "neuralkit-bfloat16": "bfloat16"}
# `neuralkit mnist --help` ends the --precision description with one of these.
NEURALKIT_BFLOAT16_SUPPORTED = "(this one: yes)"
NEURALKIT_BFLOAT16_UNSUPPORTED = "(this one: no)"
# Steady epoch time ratios that the summary prints, as (numerator, denominator).
SUMMARY_RATIOS = (
    ("neuralkit", "keras"),
    ("neuralkit", "pytorch"),
    ("neuralkit-bfloat16", "keras"),
    ("neuralkit-bfloat16", "neuralkit"),
)
TRAINING_SAMPLES = 60_000
BATCH_SIZE = 250
VALIDATION_SPLIT = 0.2
LEARNING_RATE = 1e-3
BETA_1 = 0.9
BETA_2 = 0.999
ADAM_EPSILON = 1e-7
DROPOUT_RATE = 0.25
REFERENCE_PARAMETERS = 431_242

# Square float32 matrices for the numpy GEMM peak measurement.
GEMM_SIZE = 2048
GEMM_WARMUP_PRODUCTS = 2
GEMM_TIMED_PRODUCTS = 10
# Set on some machines so that old OpenBLAS builds pick a safe kernel. The GEMM
# measurement process runs without them, so that numpy's own OpenBLAS picks its kernel
# for this CPU. Every training process keeps the environment unchanged.
OPENBLAS_KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

RESULT_PREFIX = "RESULT "
MEMORY_POLL_SECONDS = 0.05


# ---------------------------------------------------------------------------
# Data


def read_idx(path):
    """Read a gzip IDX file of unsigned bytes into a numpy array of its stored shape."""
    import numpy as np

    with gzip.open(path, "rb") as file:
        content = file.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {content[:4].hex()})")
    rank = content[3]
    header_size = 4 + 4 * rank
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    data = np.frombuffer(content, dtype=np.uint8, offset=header_size)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header shape {shape} needs {math.prod(shape)} bytes, found {data.size}")
    return data.reshape(shape)


def load_mnist(limit):
    """Return (train_images, train_labels, test_images, test_labels).

    Images are float32 in [0, 1] of shape (N, 28, 28, 1), and labels are int64. With a
    `limit`, only the first `limit` training samples are returned."""
    import numpy as np

    def images(name):
        return (read_idx(DATA_DIRECTORY / name).astype(np.float32) / 255.0)[..., np.newaxis]

    def labels(name):
        return read_idx(DATA_DIRECTORY / name).astype(np.int64)

    train_images = images("train-images-idx3-ubyte.gz")
    train_labels = labels("train-labels-idx1-ubyte.gz")
    if limit is not None:
        train_images = train_images[:limit]
        train_labels = train_labels[:limit]
    return train_images, train_labels, images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")


def split_sizes(sample_count):
    """Return (training, validation) sample counts for VALIDATION_SPLIT, rounding the
    training count down as Keras and NeuralKit do."""
    training = int(math.floor(sample_count * (1.0 - VALIDATION_SPLIT)))
    return training, sample_count - training


# ---------------------------------------------------------------------------
# FLOP count


@dataclasses.dataclass
class LayerCost:
    description: str
    output_shape: tuple
    multiply_adds: int  # per sample, forward pass
    parameters: int


def reference_layer_costs():
    """Return the convolution and dense layers of the reference network with their
    forward multiply-adds per sample and parameter counts, derived from the shapes."""
    height, width, channels = 28, 28, 1
    layers = []
    for filters in (32, 64):
        kernel = 3
        height, width = height - kernel + 1, width - kernel + 1  # "valid" padding, stride 1
        layers.append(
            LayerCost(
                description=f"Conv2D {kernel}x{kernel}x{channels} -> {filters}",
                output_shape=(height, width, filters),
                multiply_adds=height * width * filters * kernel * kernel * channels,
                parameters=kernel * kernel * channels * filters + filters,
            )
        )
        channels = filters
        height, width = height // 2, width // 2  # MaxPooling2D(2x2). Dropout adds no multiply-adds.
    inputs = height * width * channels  # Flatten
    for units in (256, 10):
        layers.append(
            LayerCost(
                description=f"Dense {inputs} -> {units}",
                output_shape=(units,),
                multiply_adds=inputs * units,
                parameters=inputs * units + units,
            )
        )
        inputs = units
    return layers


@dataclasses.dataclass
class FlopCount:
    forward_per_sample: int
    training_per_sample: int
    training_samples: int
    validation_samples: int

    @property
    def per_epoch(self):
        return self.training_samples * self.training_per_sample + self.validation_samples * self.forward_per_sample


def count_flop(training_samples, validation_samples):
    """Count the FLOP of one epoch: 2 FLOP per multiply-add of the convolution and dense
    layers. A training sample costs the forward pass, the input gradient and the weight
    gradient, each as many multiply-adds as the forward pass, except that the first
    layer needs no input gradient because its input is the data."""
    layers = reference_layer_costs()
    forward = sum(2 * layer.multiply_adds for layer in layers)
    training = 3 * forward - 2 * layers[0].multiply_adds
    return FlopCount(forward, training, training_samples, validation_samples)


def describe_flop(flop):
    layers = reference_layer_costs()
    lines = ["FLOP per epoch (1 multiply-add = 2 FLOP; convolution and dense layers only):"]
    for layer in layers:
        shape = "x".join(str(size) for size in layer.output_shape)
        lines.append(f"  {layer.description:<22} output {shape:<9} {layer.multiply_adds:>10,} multiply-adds per sample")
    first = layers[0].multiply_adds
    lines += [
        f"  forward F = 2 x {sum(layer.multiply_adds for layer in layers):,} = {flop.forward_per_sample:,} FLOP per sample",
        f"  training T = 3F - 2 x {first:,} = {flop.training_per_sample:,} FLOP per sample"
        " (forward + input gradient + weight gradient; the first Conv2D has no input gradient)",
        f"  epoch = {flop.training_samples:,} x T + {flop.validation_samples:,} x F"
        f" = {flop.per_epoch / 1e9:.1f} GFLOP (training samples + validation samples)",
        "  Pooling, activations, dropout, the loss and the Adam update are not counted.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Child processes


@dataclasses.dataclass
class ChildOutcome:
    return_code: int
    peak_rss_bytes: int  # ru_maxrss from wait4: the largest process of the tree
    polled_tree_rss_bytes: int  # psutil: largest sum of RSS over the process and its children
    cpu_seconds: float
    wall_seconds: float
    stderr_tail: str


class TreeMemoryPoller(threading.Thread):
    """Sample the summed RSS of a process and its descendants every MEMORY_POLL_SECONDS."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.peak_bytes = 0
        self.finished = threading.Event()

    def run(self):
        import psutil

        while not self.finished.is_set():
            try:
                processes = [self.process] + self.process.children(recursive=True)
                total = 0
                for process in processes:
                    try:
                        total += process.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                self.peak_bytes = max(self.peak_bytes, total)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                return
            self.finished.wait(MEMORY_POLL_SECONDS)


def run_child(command, on_line, environment=None):
    """Run `command`, calling on_line(text, monotonic_time) for each stdout line as it
    arrives, and return its exit code, peak memory, CPU time and the end of its stderr."""
    with tempfile.TemporaryFile(mode="w+") as stderr_file:
        start = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, bufsize=1, env=environment
        )
        poller = TreeMemoryPoller(process.pid)
        poller.start()
        for line in process.stdout:
            on_line(line.rstrip("\n"), time.monotonic())
        process.stdout.close()
        # wait4 returns the child's own resource usage, which includes its peak RSS.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall_seconds = time.monotonic() - start
        poller.finished.set()
        poller.join()
        stderr_file.seek(0)
        stderr_tail = "".join(stderr_file.readlines()[-20:])
    return ChildOutcome(
        return_code=process.returncode,
        peak_rss_bytes=usage.ru_maxrss * 1024,  # Linux reports kilobytes
        polled_tree_rss_bytes=poller.peak_bytes,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=wall_seconds,
        stderr_tail=stderr_tail,
    )


# ---------------------------------------------------------------------------
# Runs


@dataclasses.dataclass
class RunResult:
    framework: str
    threads: int
    round: int
    version: str = ""
    failed: bool = False
    error: str = ""
    startup_seconds: float = math.nan
    epoch_seconds: list = dataclasses.field(default_factory=list)
    final_val_accuracy: float = math.nan
    test_accuracy: float = math.nan
    parameters: int = 0
    peak_rss_bytes: int = 0
    polled_tree_rss_bytes: int = 0
    average_cores: float = math.nan
    notes: list = dataclasses.field(default_factory=list)

    @property
    def steady_seconds(self):
        """Median of epochs 2 to N, or epoch 1 alone when only one epoch ran."""
        if len(self.epoch_seconds) > 1:
            return statistics.median(self.epoch_seconds[1:])
        return self.epoch_seconds[0] if self.epoch_seconds else math.nan


def epoch_durations(training_start, epoch_ends):
    boundaries = [training_start] + list(epoch_ends)
    return [later - earlier for earlier, later in zip(boundaries, boundaries[1:])]


NEURALKIT_EPOCH_START = re.compile(r"^Epoch (\d+)/(\d+)$")
NEURALKIT_EPOCH_END = re.compile(r"^(\d+)/(\d+) - .*val_accuracy: ([0-9.]+)")
NEURALKIT_TEST = re.compile(r"^Test loss: ([0-9.]+) / Test accuracy: ([0-9.]+)")
NEURALKIT_PARAMETERS = re.compile(r"Total params: ([0-9,]+)")
NEURALKIT_ECHOED = ("Training with ", "Peak memory ")


def run_neuralkit(options, framework, threads, round_number):
    """Run `neuralkit mnist` with the precision of `framework`, a key of NEURALKIT_PRECISIONS."""
    result = RunResult(framework, threads, round_number, version=neuralkit_version(options.neuralkit))
    command = [
        str(options.neuralkit), "mnist", "--loss", "sparse", "--epochs", str(options.epochs),
        "--verbose", "2", "--threads", str(threads), "--seed", str(options.seed),
    ]
    if options.limit is not None:
        command += ["--limit", str(options.limit)]
    precision = NEURALKIT_PRECISIONS[framework]
    # float32 is the binary's default, so the float32 command omits --precision and also
    # runs with binaries that lack the option.
    if precision != "float32":
        command += ["--precision", precision]
        result.notes.append(f"--precision {precision}: the matrix products take {precision} inputs,"
                            " while the GEMM peak is measured in float32")
    print("  $ " + " ".join(command), flush=True)

    launch = time.monotonic()
    epoch_starts, epoch_ends = [], []

    def on_line(line, arrival):
        if NEURALKIT_EPOCH_START.match(line):
            epoch_starts.append(arrival)
        elif match := NEURALKIT_EPOCH_END.match(line):
            epoch_ends.append(arrival)
            result.final_val_accuracy = float(match.group(3))
        elif match := NEURALKIT_TEST.match(line):
            result.test_accuracy = float(match.group(2))
        elif match := NEURALKIT_PARAMETERS.search(line):
            result.parameters = int(match.group(1).replace(",", ""))
            return
        elif not line.startswith(NEURALKIT_ECHOED):
            return
        print("  | " + line, flush=True)

    outcome = run_child(command, on_line)
    record_outcome(result, outcome)
    if not result.failed:
        if not epoch_starts or len(epoch_ends) != options.epochs:
            result.failed = True
            result.error = f"expected {options.epochs} epoch lines in NeuralKit's output, found {len(epoch_ends)}"
        else:
            result.startup_seconds = epoch_starts[0] - launch
            result.epoch_seconds = epoch_durations(epoch_starts[0], epoch_ends)
    return result


def run_python_framework(options, framework, threads, round_number):
    result = RunResult(framework, threads, round_number)
    command = [
        sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", framework,
        "--epochs", str(options.epochs), "--threads", str(threads), "--seed", str(options.seed),
    ]
    if options.limit is not None:
        command += ["--limit", str(options.limit)]
    launch = time.monotonic()
    report = {}

    def on_line(line, arrival):
        if line.startswith(RESULT_PREFIX):
            report.update(json.loads(line[len(RESULT_PREFIX):]))
        else:
            print("  | " + line, flush=True)

    outcome = run_child(command, on_line)
    record_outcome(result, outcome)
    if not result.failed:
        if len(report.get("epoch_ends", [])) != options.epochs:
            result.failed = True
            result.error = f"the {framework} worker reported {len(report.get('epoch_ends', []))} of {options.epochs} epochs"
        else:
            # CLOCK_MONOTONIC is shared by all processes on Linux, so the worker's time
            # stamps compare with this process's launch time.
            result.startup_seconds = report["training_start"] - launch
            result.epoch_seconds = epoch_durations(report["training_start"], report["epoch_ends"])
            result.final_val_accuracy = report["final_val_accuracy"]
            result.test_accuracy = report["test_accuracy"]
            result.parameters = report["parameters"]
            result.version = report["version"]
            result.notes += report.get("notes", [])
    return result


def record_outcome(result, outcome):
    result.peak_rss_bytes = outcome.peak_rss_bytes
    result.polled_tree_rss_bytes = outcome.polled_tree_rss_bytes
    result.average_cores = outcome.cpu_seconds / outcome.wall_seconds if outcome.wall_seconds > 0 else math.nan
    if outcome.return_code != 0:
        result.failed = True
        result.error = f"exit code {outcome.return_code}; end of stderr:\n{outcome.stderr_tail}"


def bfloat16_unavailable_reason(binary):
    """Return why `binary` cannot train with --precision bfloat16 on this CPU, or None when it can.

    It reads the CPU check that `neuralkit mnist --help` prints."""
    try:
        completed = subprocess.run([str(binary), "mnist", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"'{binary} mnist --help' failed: {error}"
    if completed.returncode != 0:
        return f"'{binary} mnist --help' failed with exit code {completed.returncode}"
    if NEURALKIT_BFLOAT16_SUPPORTED in completed.stdout:
        return None
    if NEURALKIT_BFLOAT16_UNSUPPORTED in completed.stdout:
        return "this CPU lacks AVX512_BF16, which --precision bfloat16 needs (from 'neuralkit mnist --help')"
    return f"{binary} has no --precision option and needs a rebuild with 'swift build -c release'"


@functools.lru_cache(maxsize=None)
def neuralkit_version(binary):
    """Return the short commit of the git checkout that contains `binary`, with "+changes"
    when its work tree differs from that commit.

    The result is read once per binary, at its first run, so that commits made while the
    benchmark runs do not relabel later rounds. It describes the checkout, which matches
    the binary only when the binary was built from that work tree."""
    folder = pathlib.Path(binary).resolve().parent
    try:
        root = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"binary {binary}"
    return f"commit {commit}" + ("+changes" if changes else "")


# ---------------------------------------------------------------------------
# Workers: one framework in one process


def emit_epoch(epoch, epochs, seconds, logs):
    metrics = " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())
    print(f"Epoch {epoch}/{epochs}: {seconds:.2f}s - {metrics}", flush=True)


def run_keras_worker(arguments):
    # The backend must be chosen before keras is imported.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # Thread pools can only be sized before TensorFlow runs its first operation.
    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(arguments.threads)
    import keras

    train_images, train_labels, test_images, test_labels = load_mnist(arguments.limit)
    keras.utils.set_random_seed(arguments.seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Dropout(DROPOUT_RATE),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Dropout(DROPOUT_RATE),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=LEARNING_RATE, beta_1=BETA_1, beta_2=BETA_2, epsilon=ADAM_EPSILON
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.training_start = math.nan
            self.epoch_ends = []

        def on_train_begin(self, logs=None):
            self.training_start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(time.monotonic())
            previous = self.epoch_ends[-2] if len(self.epoch_ends) > 1 else self.training_start
            emit_epoch(epoch + 1, arguments.epochs, self.epoch_ends[-1] - previous, logs or {})

    timer = EpochTimer()
    history = model.fit(
        train_images, train_labels, batch_size=BATCH_SIZE, epochs=arguments.epochs,
        validation_split=VALIDATION_SPLIT, shuffle=True, verbose=0, callbacks=[timer],
    )
    test_loss, test_accuracy = model.evaluate(test_images, test_labels, batch_size=BATCH_SIZE, verbose=0)
    print(f"Test loss: {test_loss:.4f} / Test accuracy: {test_accuracy:.4f}", flush=True)
    return {
        "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
        "training_start": timer.training_start,
        "epoch_ends": timer.epoch_ends,
        "final_val_accuracy": float(history.history["val_accuracy"][-1]),
        "test_accuracy": float(test_accuracy),
        "parameters": int(model.count_params()),
        "notes": [
            f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()},"
            f" inter-op threads {tf.config.threading.get_inter_op_parallelism_threads()};"
            f" jit_compile (XLA) resolved to {model.jit_compile}"
        ],
    }


def run_pytorch_worker(arguments):
    import torch
    from torch import nn

    # The inter-op pool can only be sized before PyTorch runs parallel work.
    torch.set_num_threads(arguments.threads)
    torch.set_num_interop_threads(arguments.threads)
    torch.manual_seed(arguments.seed)

    train_images, train_labels, test_images, test_labels = load_mnist(arguments.limit)

    def to_channels_first(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    images = to_channels_first(train_images)
    labels = torch.from_numpy(train_labels)
    training_count, _ = split_sizes(len(images))
    x_train, y_train = images[:training_count], labels[:training_count]
    x_validation, y_validation = images[training_count:], labels[training_count:]
    x_test, y_test = to_channels_first(test_images), torch.from_numpy(test_labels)

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(DROPOUT_RATE),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(DROPOUT_RATE),
        nn.Flatten(),
        nn.Linear(1600, 256), nn.ReLU(),
        nn.Linear(256, 10),  # logits: CrossEntropyLoss applies log-softmax itself
    )
    # Keras' defaults: Glorot uniform kernels and zero biases. PyTorch's fans for a
    # convolution kernel (channels x kernel area) match Keras' definition.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, betas=(BETA_1, BETA_2), eps=ADAM_EPSILON)
    loss_function = nn.CrossEntropyLoss()
    shuffle_generator = torch.Generator().manual_seed(arguments.seed)

    def evaluate(x, y):
        model.eval()
        total_loss, correct = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(x), BATCH_SIZE):
                logits = model(x[start : start + BATCH_SIZE])
                batch_labels = y[start : start + BATCH_SIZE]
                total_loss += loss_function(logits, batch_labels).item() * len(batch_labels)
                correct += (logits.argmax(dim=1) == batch_labels).sum().item()
        return total_loss / len(x), correct / len(x)

    training_start = time.monotonic()
    epoch_ends = []
    validation_accuracy = math.nan
    for epoch in range(arguments.epochs):
        model.train()
        order = torch.randperm(training_count, generator=shuffle_generator)
        total_loss, correct = 0.0, 0
        for start in range(0, training_count, BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            inputs, batch_labels = x_train[batch], y_train[batch]
            optimizer.zero_grad(set_to_none=True)
            logits = model(inputs)
            loss = loss_function(logits, batch_labels)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(dim=1) == batch_labels).sum().item()
        logs = {"loss": total_loss / training_count, "accuracy": correct / training_count}
        if len(x_validation) > 0:
            validation_loss, validation_accuracy = evaluate(x_validation, y_validation)
            logs.update(val_loss=validation_loss, val_accuracy=validation_accuracy)
        epoch_ends.append(time.monotonic())
        previous = epoch_ends[-2] if len(epoch_ends) > 1 else training_start
        emit_epoch(epoch + 1, arguments.epochs, epoch_ends[-1] - previous, logs)

    test_loss, test_accuracy = evaluate(x_test, y_test)
    print(f"Test loss: {test_loss:.4f} / Test accuracy: {test_accuracy:.4f}", flush=True)
    return {
        "version": f"torch {torch.__version__}",
        "training_start": training_start,
        "epoch_ends": epoch_ends,
        "final_val_accuracy": validation_accuracy,
        "test_accuracy": test_accuracy,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "notes": [f"intra-op threads {torch.get_num_threads()}, inter-op threads {torch.get_num_interop_threads()}"],
    }


def run_gemm_worker(arguments):
    """Measure float32 GEMM with numpy at the given thread count, limited by threadpoolctl."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    random = np.random.default_rng(arguments.seed)
    a = random.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = random.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    flop = 2 * GEMM_SIZE**3
    with threadpool_limits(limits=arguments.threads, user_api="blas"):
        blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
        for _ in range(GEMM_WARMUP_PRODUCTS):
            np.dot(a, b)
        rates = []
        for _ in range(GEMM_TIMED_PRODUCTS):
            start = time.perf_counter()
            np.dot(a, b)
            rates.append(flop / (time.perf_counter() - start) / 1e9)
    library = ", ".join(
        f"{pool.get('internal_api')} {pool.get('version')} kernel {pool.get('architecture')}"
        f" with {pool.get('num_threads')} thread(s)"
        for pool in blas
    )
    return {"best_gflops": max(rates), "median_gflops": statistics.median(rates), "library": library}


def run_worker(arguments):
    workers = {"keras": run_keras_worker, "pytorch": run_pytorch_worker, "gemm": run_gemm_worker}
    report = workers[arguments.worker](arguments)
    print(RESULT_PREFIX + json.dumps(report), flush=True)


# ---------------------------------------------------------------------------
# Machine peak


def measure_machine_peak(thread_counts, seed):
    """Return {threads: best GFLOP/s} of numpy float32 GEMM, measured in child processes
    without the OPENBLAS_KERNEL_VARIABLES."""
    environment = {name: value for name, value in os.environ.items() if name not in OPENBLAS_KERNEL_VARIABLES}
    removed = [f"{name}={os.environ[name]}" for name in OPENBLAS_KERNEL_VARIABLES if name in os.environ]
    print(f"\nMachine peak: numpy float32 GEMM of {GEMM_SIZE}x{GEMM_SIZE} matrices, best of {GEMM_TIMED_PRODUCTS} products")
    if removed:
        print(f"  The GEMM processes run without {', '.join(removed)}; the training runs keep them.")
    peaks = {}
    for threads in thread_counts:
        report = {}

        def on_line(line, arrival):
            if line.startswith(RESULT_PREFIX):
                report.update(json.loads(line[len(RESULT_PREFIX):]))

        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", "gemm",
                   "--threads", str(threads), "--seed", str(seed)]
        outcome = run_child(command, on_line, environment=environment)
        if outcome.return_code != 0 or "best_gflops" not in report:
            print(f"  {threads} thread(s): failed (exit code {outcome.return_code})\n{outcome.stderr_tail}")
            continue
        peaks[threads] = report["best_gflops"]
        print(f"  {threads} thread(s): best {report['best_gflops']:.1f} GFLOP/s, median {report['median_gflops']:.1f}"
              f" ({report['library']})")
    return peaks


# ---------------------------------------------------------------------------
# Report


def format_megabytes(size_bytes):
    return f"{size_bytes / 1_048_576:.1f}" if size_bytes else "-"


def print_run(result, flop, peaks):
    title = f"{FRAMEWORK_TITLES[result.framework]} ({result.version}), {result.threads} thread(s), round {result.round}"
    if result.failed:
        print(f"  {title}: FAILED: {result.error}", flush=True)
        return
    epochs = "  ".join(f"{index + 1}: {seconds:.2f}" for index, seconds in enumerate(result.epoch_seconds))
    steady = result.steady_seconds
    steady_source = (
        f"median of epochs 2-{len(result.epoch_seconds)}" if len(result.epoch_seconds) > 1
        else "epoch 1 alone, which includes warm-up"
    )
    rate = flop.per_epoch / steady / 1e9
    lines = [
        f"  {title}",
        f"    startup (launch to start of training, data loading included): {result.startup_seconds:.2f} s",
        f"    seconds per epoch: {epochs}",
        f"    first epoch: {result.epoch_seconds[0]:.2f} s; steady epoch: {steady:.2f} s ({steady_source})",
        f"    throughput: {flop.training_samples / steady:,.0f} training samples/s",
        f"    achieved: {rate:.1f} GFLOP/s ({flop.per_epoch / 1e9:.1f} GFLOP per epoch / {steady:.2f} s)"
        + (f", {100 * rate / peaks[result.threads]:.0f}% of the GEMM peak" if result.threads in peaks else ""),
        f"    peak memory: {format_megabytes(result.peak_rss_bytes)} MB max RSS"
        f" (polled sum over the process tree: {format_megabytes(result.polled_tree_rss_bytes)} MB)",
        f"    CPU use: {result.average_cores:.2f} cores on average over the whole process",
        f"    parameters: {result.parameters:,}; final val_accuracy: {result.final_val_accuracy:.4f};"
        f" test accuracy: {result.test_accuracy:.4f}",
    ]
    if result.parameters != REFERENCE_PARAMETERS:
        lines.append(f"    WARNING: the model has {result.parameters:,} parameters, expected {REFERENCE_PARAMETERS:,}")
    lines += [f"    {note}" for note in result.notes]
    print("\n".join(lines), flush=True)


def print_summary(results, flop, peaks):
    print("\n## Summary\n")
    header = "| framework | threads | round | first epoch (s) | steady epoch (s) | samples/s | GFLOP/s |"
    separator = "|---|---|---|---|---|---|---|"
    if peaks:
        header += " % of GEMM peak |"
        separator += "---|"
    header += " peak RSS (MB) | test accuracy |"
    separator += "---|---|"
    print(header)
    print(separator)
    for result in results:
        name = FRAMEWORK_TITLES[result.framework]
        if result.failed:
            columns = header.count("|") - 1
            print(f"| {name} | {result.threads} | {result.round} | failed |" + " |" * (columns - 4))
            continue
        steady = result.steady_seconds
        rate = flop.per_epoch / steady / 1e9
        row = (f"| {name} | {result.threads} | {result.round} | {result.epoch_seconds[0]:.2f} | {steady:.2f} |"
               f" {flop.training_samples / steady:,.0f} | {rate:.1f} |")
        if peaks:
            row += f" {100 * rate / peaks[result.threads]:.0f}% |" if result.threads in peaks else " - |"
        row += f" {format_megabytes(result.peak_rss_bytes)} | {result.test_accuracy:.4f} |"
        print(row)

    if any(len(result.epoch_seconds) == 1 for result in results):
        print("\nWith one epoch the steady time is epoch 1, which includes each framework's warm-up.")
    print()
    for threads in sorted({result.threads for result in results}, reverse=True):
        medians = {}
        for framework in FRAMEWORKS:
            times = [r.steady_seconds for r in results if r.framework == framework and r.threads == threads and not r.failed]
            if times:
                medians[framework] = statistics.median(times)
        for framework, other in SUMMARY_RATIOS:
            if framework in medians and other in medians:
                title = FRAMEWORK_TITLES[framework]
                print(f"{title} / {FRAMEWORK_TITLES[other]} steady epoch time, {threads} thread(s):"
                      f" {medians[framework] / medians[other]:.2f}"
                      f" ({medians[framework]:.2f} s / {medians[other]:.2f} s; below 1 means {title} is faster)")


def replace_nan(value):
    """Return `value` with every NaN replaced by None, which JSON can represent."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: replace_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_nan(item) for item in value]
    return value


def describe_machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


# ---------------------------------------------------------------------------
# Command line


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="Scripts/benchmark",
        description="Train the MNIST reference network with NeuralKit (float32, and bfloat16 on CPUs with "
        "AVX512_BF16), Keras (TensorFlow backend) and PyTorch on this CPU and compare epoch time, throughput, achieved GFLOP/s, peak memory "
        "and test accuracy.",
    )
    parser.add_argument("--epochs", type=positive_integer, metavar="N", default=3,
                        help="epochs per run, at least 1. Epochs 2 to N give the steady time (default: 3)")
    parser.add_argument("--frameworks", type=framework_list, metavar="LIST",
                        help=f"comma-separated frameworks to run, in this order, from {', '.join(FRAMEWORKS)}. "
                        "neuralkit-bfloat16 is NeuralKit with --precision bfloat16 (bfloat16 inputs and float32 "
                        "sums in the matrix products) and needs a CPU with AVX512_BF16 (default: all of them, "
                        "without neuralkit-bfloat16 when 'neuralkit mnist --help' reports that this CPU lacks "
                        "AVX512_BF16)")
    parser.add_argument("--threads", type=positive_integer, metavar="T", default=2,
                        help="threads for every framework (default: 2)")
    parser.add_argument("--single-thread", action="store_true",
                        help="also run every framework with 1 thread")

    parser.add_argument("--rounds", type=positive_integer, metavar="R", default=1,
                        help="times to run the frameworks in turn, so that a change in machine load "
                        "affects all of them (default: 1)")
    parser.add_argument("--limit", type=positive_integer, metavar="N",
                        help=f"train on the first N of the {TRAINING_SAMPLES:,} training samples only, "
                        "at least 2. The validation split still takes the last 20%% of them (default: all)")
    parser.add_argument("--seed", type=int, metavar="S", default=42,
                        help="seed for weights, dropout and shuffling in every framework (default: 42)")

    parser.add_argument("--machine-peak", action="store_true",
                        help="also measure numpy float32 GEMM GFLOP/s at 1 and --threads threads and "
                        "report each run's achieved share of it")
    parser.add_argument("--neuralkit", type=pathlib.Path, metavar="PATH", default=DEFAULT_NEURALKIT,
                        help=f"the neuralkit executable (default: {DEFAULT_NEURALKIT.relative_to(REPOSITORY_ROOT)})")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE",
                        help="also write every run's measurements to FILE as JSON")
    # Internal: runs one framework, or the GEMM measurement, inside a child process.
    parser.add_argument("--worker", choices=("keras", "pytorch", "gemm"), help=argparse.SUPPRESS)

    arguments = parser.parse_args(argv)
    if arguments.limit is not None and not 2 <= arguments.limit <= TRAINING_SAMPLES:
        parser.error(f"--limit must be from 2 to {TRAINING_SAMPLES}, got {arguments.limit}")
    return arguments


def positive_integer(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {value}")
    return value


def framework_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown framework(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FRAMEWORKS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a framework is listed twice in '{text}'")
    return names


def main(argv):
    options = parse_arguments(argv)
    if options.worker:
        run_worker(options)
        return 0
    frameworks = options.frameworks or list(FRAMEWORKS)
    if any(framework in NEURALKIT_PRECISIONS for framework in frameworks) and not options.neuralkit.is_file():
        print(f"benchmark: NeuralKit executable {options.neuralkit} not found; run 'swift build -c release' "
              "or pass --neuralkit PATH", file=sys.stderr)
        return 1
    if "neuralkit-bfloat16" in frameworks and (reason := bfloat16_unavailable_reason(options.neuralkit)):
        if options.frameworks:
            print(f"benchmark: cannot run neuralkit-bfloat16 because {reason}. Remove neuralkit-bfloat16 from --frameworks.",
                  file=sys.stderr)
            return 1
        print(f"benchmark: leaving neuralkit-bfloat16 out of the default frameworks: {reason}")
        frameworks.remove("neuralkit-bfloat16")
    options.frameworks = frameworks

    sample_count = options.limit or TRAINING_SAMPLES
    flop = count_flop(*split_sizes(sample_count))
    thread_counts = [options.threads] + ([1] if options.single_thread and options.threads != 1 else [])

    print(f"Machine: {describe_machine()}")
    kernel_settings = [f"{name}={os.environ[name]}" for name in OPENBLAS_KERNEL_VARIABLES if name in os.environ]
    if kernel_settings:
        print(f"Environment of the training runs: {', '.join(kernel_settings)}")
    print(f"Data: {sample_count:,} training samples ({flop.training_samples:,} for training, "
          f"{flop.validation_samples:,} for validation), 10,000 test samples, batch size {BATCH_SIZE}")
    print(f"Runs: {options.rounds} round(s) of {', '.join(options.frameworks)} at "
          f"{' and '.join(str(threads) for threads in thread_counts)} thread(s), {options.epochs} epoch(s) each")
    print(describe_flop(flop))

    peaks = measure_machine_peak(sorted({1, *thread_counts}), options.seed) if options.machine_peak else {}

    results = []
    for round_number in range(1, options.rounds + 1):
        for threads in thread_counts:
            for framework in options.frameworks:
                print(f"\n[round {round_number}/{options.rounds}] {FRAMEWORK_TITLES[framework]}, {threads} thread(s)",
                      flush=True)
                if framework in NEURALKIT_PRECISIONS:
                    result = run_neuralkit(options, framework, threads, round_number)
                else:
                    result = run_python_framework(options, framework, threads, round_number)
                print_run(result, flop, peaks)
                results.append(result)

    print_summary(results, flop, peaks)
    if options.json:
        document = {
            "machine": describe_machine(),
            "settings": {name: str(value) if isinstance(value, pathlib.Path) else value
                         for name, value in vars(options).items() if name != "worker"},
            "flop_per_epoch": flop.per_epoch,
            "gemm_peak_gflops": peaks,
            "runs": [dataclasses.asdict(result) | {"steady_seconds": result.steady_seconds} for result in results],
        }
        options.json.write_text(json.dumps(replace_nan(document), indent=2, allow_nan=False) + "\n")
        print(f"\nWrote {options.json}")
    return 1 if any(result.failed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
