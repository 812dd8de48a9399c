"""Writes a benign scan corpus with the real libraries: every file is what numpy, pandas,
scikit-learn, scipy, joblib, transformers and the standard library's `pickle` produce for real
objects. Nothing here is ever loaded: the libraries only write, and `airlock scan` reads bytes.

PyTorch itself is not installable in a reasonable size (its wheel brings GBs of CUDA libraries),
so its zip layout is written here exactly as `torch.save` writes it (torch/serialization.py,
`_save`): `<name>/data.pkl`, `<name>/byteorder`, `<name>/data/<key>`, `<name>/version`, the
pickle made by the real `pickle` module at torch's DEFAULT_PROTOCOL 2, storages emitted through
`persistent_id` as ('storage', torch.<T>Storage, key, 'cpu', numel) and tensors reduced to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())`
(Tensor._reduce_ex_internal). Classes of torch, accelerate and Lightning, which import torch, are
stand-ins registered under their real module paths, so the pickle names them exactly as the real
objects would; each stand-in says which real class it mirrors.

Usage: gen_benign.py OUT_DIR [--set current|previous]. Writes OUT_DIR/manifest.txt (one file a
line) and prints the number of files written.
"""

import argparse
import array
import collections
import datetime
import decimal
import fractions
import io
import os
import pathlib
import pickle
import random
import re
import struct
import sys
import types
import uuid
import warnings
import zipfile

import numpy as np

warnings.simplefilter("ignore")

OUT = None
WRITTEN = []


def path(rel):
    p = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    WRITTEN.append(rel)
    return p


def dump(rel, obj, protocol):
    with open(path(rel), "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


# --- the standard library, at every protocol -------------------------------------------------

def stdlib():
    stdlib_objects = {
        "scalars": [1, -7, 2**70, 1.5, float("nan"), "text", "ünïcode", b"bytes", None, True],
        "containers": {"list": [1, 2, [3]], "tuple": (1, (2, 3)), "dict": {"a": {"b": 1}}},
        "sets": [set([1, 2]), frozenset(["a", "b"])],
        "bytearray": bytearray(b"\x00\x01abc"),
        "complex": complex(1, -2),
        "range": range(0, 10, 2),
        "slice": slice(1, 10, 3),
        "ellipsis": [Ellipsis, NotImplemented],
        "datetime": [
            datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
            datetime.date(2024, 1, 2),
            datetime.time(3, 4, 5),
            datetime.timedelta(days=3, seconds=7),
            datetime.timezone(datetime.timedelta(hours=2), "CEST"),
        ],
        "decimal": decimal.Decimal("3.14159"),
        "fraction": fractions.Fraction(3, 7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "ordereddict": collections.OrderedDict([("b", 1), ("a", 2)]),
        "defaultdict": collections.defaultdict(list, {"k": [1]}),
        "defaultdict_int": collections.defaultdict(int, {"k": 1}),
        "counter": collections.Counter("abracadabra"),
        "deque": collections.deque([1, 2, 3], maxlen=5),
        "path": [pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("c:/x"), pathlib.PosixPath("/tmp/x")],
        "namespace": argparse.Namespace(lr=0.1, epochs=3, name="run"),
        "simplenamespace": types.SimpleNamespace(a=1, b="two"),
        "regex": re.compile(r"^[a-z]+\d*$", re.IGNORECASE),
        "array": array.array("d", [1.0, 2.0]),
        "struct_bytes": struct.pack("<3f", 1, 2, 3),
    }
    for name, obj in stdlib_objects.items():
        for proto in range(0, 6):
            dump(f"stdlib/{name}_p{proto}.pkl", obj, proto)


# --- numpy ------------------------------------------------------------------------------------

def numpy_objects():
    rng = np.random.default_rng(0)
    return {
        "f4": np.arange(12, dtype=np.float32).reshape(3, 4),
        "f8_fortran": np.asfortranarray(rng.normal(size=(4, 3))),
        "i8": np.arange(10, dtype=np.int64),
        "u1": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False]),
        "c16": np.array([1 + 2j]),
        "str": np.array(["ab", "cde"]),
        "bytes": np.array([b"ab", b"c"]),
        "datetime": np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[D]"),
        "timedelta": np.array([1, 2], dtype="timedelta64[s]"),
        "structured": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "object": np.array([1, "two", None, {"k": 3}], dtype=object),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3)),
        "masked": np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
        "scalars": [np.float64(1.5), np.float32(2.5), np.int32(7), np.int64(-3), np.bool_(True),
                    np.uint8(200), np.complex64(1j), np.str_("s"), np.datetime64("2024-01-01")],
        "dtypes": [np.dtype("f8"), np.dtype("<i4"), np.dtype([("x", "f4"), ("y", "i2")]),
                   np.dtype("U10"), np.dtype("O")],
        "random_state": np.random.RandomState(42),
        "generator": np.random.default_rng(7),
        "random_state_tuple": np.random.RandomState(1).get_state(),
    }


def numpy_files(tag):
    for name, obj in numpy_objects().items():
        for proto in range(0, 6):
            dump(f"numpy{tag}/{name}_p{proto}.pkl", obj, proto)
    np.save(path(f"numpy{tag}/object_array.npy"), np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.savez(path(f"numpy{tag}/arrays.npz"), a=np.arange(3), b=np.ones((2, 2)))


# --- pandas -----------------------------------------------------------------------------------

def pandas_files(tag):
    import pandas as pd

    frame = pd.DataFrame({
        "i": [1, 2, 3], "f": [0.5, None, 2.5], "s": ["a", "b", "c"],
        "cat": pd.Categorical(["x", "y", "x"]),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        "b": [True, False, True],
    })
    objects = {
        "frame": frame,
        "frame_multiindex": frame.set_index(["s", "i"]),
        "series": pd.Series([1.0, 2.0], index=["a", "b"], name="v"),
        "series_str": pd.Series(["x", None, "z"], dtype="object"),
        "categorical": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
        "index": pd.Index(["a", "b"]),
        "range_index": pd.RangeIndex(0, 10, 2),
        "datetime_index": pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"),
        "period_index": pd.period_range("2024-01", periods=3, freq="M"),
        "interval_index": pd.interval_range(0, 3),
        "timestamp": pd.Timestamp("2024-03-04 05:06", tz="UTC"),
        "timedelta": pd.Timedelta("1 day 2 hours"),
        "period": pd.Period("2024-05", freq="M"),
        "nullable": pd.Series([1, None, 3], dtype="Int64"),
        "sparse": pd.Series(pd.arrays.SparseArray([0, 0, 1, 0])),
    }
    for name, obj in objects.items():
        for proto in (2, 4, 5):
            dump(f"pandas{tag}/{name}_p{proto}.pkl", obj, proto)
    frame.to_pickle(path(f"pandas{tag}/to_pickle.pkl"))
    frame.to_pickle(path(f"pandas{tag}/to_pickle.pkl.gz"), compression="gzip")


# --- scikit-learn, scipy, joblib --------------------------------------------------------------

def sklearn_files():
    import joblib
    import pandas as pd
    from scipy import sparse
    from sklearn import (cluster, compose, decomposition, ensemble, feature_extraction,
                         impute, linear_model, naive_bayes, neighbors, neural_network, pipeline,
                         preprocessing, svm, tree)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    yr = X @ np.array([1.0, -2.0, 0.5, 0.0])
    texts = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"] * 5
    ty = [0, 1, 1, 0] * 5
    frame = pd.DataFrame({"num": rng.normal(size=20), "cat": ["a", "b"] * 10})

    fitted = {
        "linear_regression": linear_model.LinearRegression().fit(X, yr),
        "logistic_regression": linear_model.LogisticRegression().fit(X, y),
        "ridge": linear_model.Ridge().fit(X, yr),
        "sgd": linear_model.SGDClassifier(random_state=0).fit(X, y),
        "decision_tree": tree.DecisionTreeClassifier(max_depth=3).fit(X, y),
        "random_forest": ensemble.RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        "extra_trees": ensemble.ExtraTreesRegressor(n_estimators=3, random_state=0).fit(X, yr),
        "gradient_boosting": ensemble.GradientBoostingClassifier(n_estimators=5).fit(X, y),
        "hist_gradient_boosting": ensemble.HistGradientBoostingRegressor(max_iter=5).fit(X, yr),
        "isolation_forest": ensemble.IsolationForest(n_estimators=5, random_state=0).fit(X),
        "standard_scaler": preprocessing.StandardScaler().fit(X),
        "minmax_scaler": preprocessing.MinMaxScaler().fit(X),
        "onehot": preprocessing.OneHotEncoder().fit([["a"], ["b"]]),
        "ordinal": preprocessing.OrdinalEncoder().fit([["a"], ["b"]]),
        "label_encoder": preprocessing.LabelEncoder().fit(["x", "y"]),
        "imputer": impute.SimpleImputer().fit(X),
        "count_vectorizer": feature_extraction.text.CountVectorizer().fit(texts),
        "tfidf": feature_extraction.text.TfidfVectorizer().fit(texts),
        "pca": decomposition.PCA(n_components=2).fit(X),
        "truncated_svd": decomposition.TruncatedSVD(n_components=2).fit(X),
        "kmeans": cluster.KMeans(n_clusters=2, n_init=2, random_state=0).fit(X),
        "dbscan": cluster.DBSCAN().fit(X),
        "svc": svm.SVC().fit(X, y),
        "knn": neighbors.KNeighborsClassifier().fit(X, y),
        "naive_bayes": naive_bayes.GaussianNB().fit(X, y),
        "mlp": neural_network.MLPClassifier(hidden_layer_sizes=(3,), max_iter=5).fit(X, y),
        "pipeline": pipeline.make_pipeline(preprocessing.StandardScaler(),
                                           linear_model.LogisticRegression()).fit(X, y),
        "text_pipeline": pipeline.Pipeline([
            ("tfidf", feature_extraction.text.TfidfVectorizer()),
            ("clf", linear_model.LogisticRegression())]).fit(texts, ty),
        "column_transformer": compose.ColumnTransformer([
            ("num", preprocessing.StandardScaler(), ["num"]),
            ("cat", preprocessing.OneHotEncoder(), ["cat"])]).fit(frame),
    }
    for name, est in fitted.items():
        for proto in (2, 4, 5):
            dump(f"sklearn/{name}_p{proto}.pkl", est, proto)
    for name in ("random_forest", "pipeline", "column_transformer", "tfidf", "gradient_boosting"):
        est = fitted[name]
        joblib.dump(est, path(f"joblib/{name}.joblib"))
        joblib.dump(est, path(f"joblib/{name}_zlib.joblib"), compress=3)
        joblib.dump(est, path(f"joblib/{name}.joblib.gz"), compress=("gzip", 3))
    joblib.dump({"X": X, "labels": np.array(["a", "b"], dtype=object)}, path("joblib/arrays.joblib"))

    mats = {
        "csr": sparse.csr_matrix(np.eye(4)),
        "csc": sparse.csc_matrix(np.eye(4)),
        "coo": sparse.coo_matrix(np.eye(4)),
        "lil": sparse.lil_matrix(np.eye(3)),
        "dok": sparse.dok_matrix(np.eye(3)),
        "dia": sparse.dia_matrix(np.eye(3)),
        "bsr": sparse.bsr_matrix(np.eye(4)),
        "csr_array": sparse.csr_array(np.eye(3)),
        "coo_array": sparse.coo_array(np.eye(3)),
    }
    for name, m in mats.items():
        for proto in (2, 5):
            dump(f"scipy/{name}_p{proto}.pkl", m, proto)


# --- PyTorch-format checkpoints ---------------------------------------------------------------

def stand_in_module(name):
    """Registers `name` and its parents in sys.modules (so pickle resolves classes by name)."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod = ".".join(parts[:i])
        if mod not in sys.modules:
            sys.modules[mod] = types.ModuleType(mod)
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[mod])
    return sys.modules[name]


def stand_in(module, name, base=object, **attrs):
    cls = type(name, (base,), dict(attrs))
    cls.__module__ = module
    cls.__qualname__ = name
    setattr(stand_in_module(module), name, cls)
    return cls


def stand_in_function(module, name):
    def f(*args):
        raise RuntimeError("stand-in: never called")

    f.__module__ = module
    f.__qualname__ = name
    f.__name__ = name
    setattr(stand_in_module(module), name, f)
    return f


class _Dtype:
    """torch.dtype's __reduce__ returns its name, so pickle writes GLOBAL torch.<name>."""

    def __init__(self, name):
        self.name = name
        self.__module__ = "torch"

    def __reduce__(self):
        return self.name


class Storage:
    def __init__(self, kind, numel, nbytes):
        self.kind, self.numel, self.nbytes = kind, numel, nbytes


class Tensor:
    """Pickles the way torch.Tensor does for a plain CPU tensor (Tensor._reduce_ex_internal)."""

    def __init__(self, shape, kind="FloatStorage", itemsize=4, requires_grad=False):
        n = 1
        for d in shape:
            n *= d
        self.storage = Storage(kind, n, n * itemsize)
        self.shape = tuple(shape)
        stride, acc = [], 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= d
        self.stride = tuple(stride)
        self.requires_grad = requires_grad

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, 0, self.shape, self.stride,
                                     self.requires_grad, collections.OrderedDict()))


class Parameter(Tensor):
    """torch.nn.Parameter.__reduce_ex__: _rebuild_parameter(data, requires_grad, hooks)."""

    def __reduce_ex__(self, proto):
        data = Tensor(self.shape)
        return (_rebuild_parameter, (data, True, collections.OrderedDict()))


def install_torch_stand_ins():
    """Registers torch's names only now: scipy and transformers probe `sys.modules["torch"]`."""
    global _torch, _rebuild_tensor_v2, _rebuild_parameter, STORAGES
    _torch = stand_in_module("torch")
    _rebuild_tensor_v2 = stand_in_function("torch._utils", "_rebuild_tensor_v2")
    _rebuild_parameter = stand_in_function("torch._utils", "_rebuild_parameter")
    STORAGES = {dt: stand_in("torch", dt) for dt in (
        "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "ByteStorage",
        "IntStorage", "BoolStorage", "DoubleStorage")}
    for n in ("float32", "float16", "bfloat16", "int64"):
        setattr(_torch, n, _Dtype(n))


def torch_save(rel, obj, archive=None):
    """torch.save's zip layout with its pickler's persistent_id (protocol 2)."""
    archive = archive or os.path.splitext(os.path.basename(rel))[0]
    storages = {}

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = storages.setdefault(id(o), (str(len(storages)), o))[0]
                return ("storage", STORAGES[o.kind], key, "cpu", o.numel)
            return None

    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path(rel), "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", buf.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for key, st in sorted(storages.values(), key=lambda kv: int(kv[0])):
            z.writestr(f"{archive}/data/{key}", bytes(st.nbytes))
        z.writestr(f"{archive}/version", "3\n")
        z.writestr(f"{archive}/.data/serialization_id", "1234567890123456789012345678901234567890")


def state_dict(layers):
    sd = collections.OrderedDict()
    for i, (out, inp) in enumerate(layers):
        sd[f"layers.{i}.weight"] = Tensor((out, inp))
        sd[f"layers.{i}.bias"] = Tensor((out,))
    sd["bn.running_mean"] = Tensor((4,))
    sd["bn.num_batches_tracked"] = Tensor((), "LongStorage", 8)
    # nn.Module.state_dict() sets a `_metadata` attribute, so pickle BUILDs the OrderedDict.
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    return sd


def adam_state(n):
    return {
        "state": {i: {"step": Tensor(()), "exp_avg": Tensor((4,)), "exp_avg_sq": Tensor((4,))}
                  for i in range(n)},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                          "amsgrad": False, "maximize": False, "foreach": None,
                          "capturable": False, "differentiable": False, "fused": None,
                          "params": list(range(n))}],
    }


def scheduler_state():
    # LambdaLR/StepLR.state_dict(): plain attributes, lr_lambdas as None for functions.
    return {"step_size": 30, "gamma": 0.1, "base_lrs": [0.1], "last_epoch": 4,
            "verbose": False, "_step_count": 5, "_get_lr_called_within_step": False,
            "_last_lr": [0.1], "lr_lambdas": [None]}


def torch_files():
    # Hugging Face Trainer: training_args.bin is torch.save(TrainingArguments) (the real class,
    # which transformers builds without torch installed). Built before torch's stand-ins exist.
    try:
        from transformers import TrainingArguments

        args = TrainingArguments(output_dir="/tmp/out", learning_rate=3e-5, num_train_epochs=2,
                                 eval_strategy="steps", save_strategy="epoch",
                                 lr_scheduler_type="cosine", report_to="none")
    except ImportError:
        args = None
    install_torch_stand_ins()
    torch_save("torch/pytorch_model.bin", state_dict([(4, 4), (2, 4)]))
    torch_save("torch/half_weights.bin", collections.OrderedDict(
        [("w", Tensor((8, 8), "HalfStorage", 2)), ("v", Tensor((8,), "BFloat16Storage", 2))]))
    torch_save("torch/optimizer.pt", adam_state(3))
    torch_save("torch/scheduler.pt", scheduler_state())
    torch_save("torch/rng_state.pth", {
        # transformers Trainer._save_rng_state: python, numpy, cpu (and cuda) generator states.
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": Tensor((5056,), "ByteStorage", 1),
    })
    # accelerate save_accelerator_state: random_states_0.pkl is a torch.save of this dict.
    torch_save("torch/random_states_0.pkl", {
        "step": 10,
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),
        "torch_manual_seed": Tensor((5056,), "ByteStorage", 1),
    })
    # timm train.py checkpoint_saver: epoch, arch, state_dict, optimizer, version, args, metric.
    torch_save("torch/timm_checkpoint.pth.tar", {
        "epoch": 3, "arch": "resnet18", "state_dict": state_dict([(4, 4)]),
        "optimizer": adam_state(2), "version": 2,
        "args": argparse.Namespace(model="resnet18", lr=0.05, epochs=100, amp=True,
                                   mean=(0.485, 0.456, 0.406), data_dir=None),
        "metric": 71.2,
    })
    # torchvision references/classification/train.py: model, optimizer, lr_scheduler, epoch, args.
    torch_save("torch/torchvision_checkpoint.pth", {
        "model": state_dict([(4, 4)]), "optimizer": adam_state(2),
        "lr_scheduler": scheduler_state(), "epoch": 7,
        "args": argparse.Namespace(model="resnet50", batch_size=32, lr=0.5, workers=16),
        "model_ema": None, "scaler": {"scale": 65536.0, "growth_factor": 2.0,
                                      "backoff_factor": 0.5, "growth_interval": 2000,
                                      "_growth_tracker": 0},
    })
    # Checkpoints written by research code often keep numpy scalars (best accuracy, seeds).
    torch_save("torch/numpy_scalars.pt", {
        "state_dict": state_dict([(2, 2)]), "best_acc": np.float64(0.913),
        "epoch": np.int64(12), "seed_state": np.random.RandomState(3).get_state(),
        "val_curve": np.linspace(0, 1, 5),
    })
    # Whole-module save: nn.Parameter values and torch dtypes inside the pickle.
    torch_save("torch/parameters.pt", {
        "weight": Parameter((3, 3)), "dtype": _torch.float32, "half": _torch.bfloat16})

    # Lightning checkpoint (lightning 2.x Trainer.save_checkpoint): hyper_parameters is an
    # AttributeDict (lightning.fabric.utilities.data, a dict subclass; pytorch_lightning 1.x:
    # pytorch_lightning.utilities.parsing), callbacks keyed by their state_key strings.
    for mod, ver in (("lightning.fabric.utilities.data", "2.6.6"),
                     ("pytorch_lightning.utilities.parsing", "1.9.5")):
        AttributeDict = stand_in(mod, "AttributeDict", dict)
        hp = AttributeDict(lr=1e-3, hidden=64, optimizer="adam")
        torch_save(f"torch/lightning_{ver}.ckpt", {
            "epoch": 4, "global_step": 500, "pytorch-lightning_version": ver,
            "state_dict": state_dict([(4, 4)]),
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {
                "total": {"ready": 5, "started": 5, "processed": 5, "completed": 4},
                "current": {"ready": 5, "started": 5, "processed": 5, "completed": 4}}}},
            "callbacks": {
                "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0}": {
                    "monitor": "val_loss", "best_model_score": Tensor(()),
                    "best_model_path": "/ckpt/epoch=3.ckpt", "current_score": Tensor(()),
                    "dirpath": "/ckpt", "best_k_models": {"/ckpt/epoch=3.ckpt": Tensor(())},
                    "kth_best_model_path": "/ckpt/epoch=3.ckpt", "kth_value": Tensor(()),
                    "last_model_path": ""},
                "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}": {
                    "wait_count": 1, "stopped_epoch": 0, "best_score": Tensor(()),
                    "patience": 3},
            },
            "optimizer_states": [adam_state(2)],
            "lr_schedulers": [scheduler_state()],
            "hparams_name": "kwargs",
            "hyper_parameters": hp,
        })

    if args is None:
        return
    torch_save("torch/training_args.bin", args, archive="training_args")
    # trainer_state.json is JSON; the optimizer/scheduler/rng files sit beside it.
    torch_save("torch/hf_checkpoint/optimizer.pt", adam_state(4), archive="optimizer")
    torch_save("torch/hf_checkpoint/scheduler.pt", scheduler_state(), archive="scheduler")
    for proto in (2, 4, 5):
        dump(f"transformers/training_args_p{proto}.pkl", args, proto)


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--set", choices=["current", "previous"], default="current")
    a = ap.parse_args()
    OUT = a.out
    os.makedirs(OUT, exist_ok=True)
    import pandas as pd

    def tag(lib):
        return "" if a.set == "current" else f"-{lib.__version__.split('.')[0]}x"

    if a.set == "current":
        stdlib()
    numpy_files(tag(np))
    pandas_files(tag(pd))
    if a.set == "current":
        sklearn_files()
        torch_files()
    with open(os.path.join(OUT, f"manifest-{a.set}.txt"), "w") as f:
        f.write("\n".join(WRITTEN) + "\n")
    print(len(WRITTEN))


if __name__ == "__main__":
    main()
