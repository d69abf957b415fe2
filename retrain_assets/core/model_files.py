"""Loading a model file safely: only scikit-learn models the platform saved itself with skops.

Loading a pickle runs whatever code the file holds, so a registered version that is not a skops
scikit-learn model, or whose skops file asks to trust anything but scikit-learn classes and NumPy
arrays, is refused with a message that says what to do. Used for every load: the champion, a
challenger, the previous champion and the serving smoke test. Pure Python (no Dagster).
"""

from __future__ import annotations

from pathlib import Path


class UnsafeModelError(ValueError):
    """A registered model the platform will not load: loading it could run code from the file."""


SAFE_NUMPY_TYPES = frozenset({"numpy.dtype", "numpy.ndarray"})
"""Besides scikit-learn classes, the only types a model file may ask skops to trust."""


def _refuse(label: str, why: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"refusing to load {label}: {why}. retrain-assets loads only scikit-learn models it saved itself with "
        "skops (no pickle), so that loading a model can never run code from the file; move the alias back to a "
        "version the platform trained (rollback) or retrain to register a new one"
    )


def _safe_type(name: str) -> bool:
    """A type skops may reconstruct: a scikit-learn *class* (not a function) or a plain NumPy dtype/array."""
    if name in SAFE_NUMPY_TYPES:
        return True
    if not name.startswith("sklearn."):
        return False
    import importlib

    module_name, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type)


def check_safe_model(model_dir: Path, label: str) -> tuple[Path, list[str]]:
    """Check, without loading it, that a downloaded MLflow model is one the platform may load.

    The rule: an ``sklearn`` flavor saved with skops, whose file asks to trust only scikit-learn
    classes and NumPy dtypes/arrays, each also listed in the ``skops_trusted_types`` recorded when
    it was logged. Pickle and cloudpickle files are refused (unpickling runs arbitrary code), and so
    is a skops file that wants anything else trusted (the recorded list alone is not enough: it
    sits in the same folder as the file and a crafted model can list what it likes).

    Args:
        model_dir: The folder holding the ``MLmodel`` file.
        label: How to name the model in a message, e.g. ``"version 3 of 'churn' (champion)"``.

    Returns:
        (the skops file, the types to pass as ``trusted``).

    Raises:
        UnsafeModelError: the model is not one the platform may load; the message says why and what to do.
    """
    import skops.io
    import yaml

    spec_path = model_dir / "MLmodel"
    if not spec_path.is_file():
        raise _refuse(label, f"it has no MLmodel file in {model_dir.name!r}")
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    flavor = (spec.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        found = sorted((spec.get("flavors") or {}).keys())
        raise _refuse(label, f"it has no scikit-learn flavor (flavors: {found})")
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        raise _refuse(label, f"it is saved as {fmt!r}, and loading a {fmt} file runs whatever code it holds")
    path = (model_dir / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_file() or model_dir.resolve() not in path.parents:
        raise _refuse(label, "its model file is missing or lies outside the model folder")
    recorded = set(flavor.get("skops_trusted_types") or [])
    try:
        wanted = skops.io.get_untrusted_types(file=path)
    except Exception as error:  # a corrupt or foreign file: not a skops model
        raise _refuse(label, f"its skops file cannot be read ({type(error).__name__})") from None
    unsafe = sorted(t for t in wanted if not _safe_type(t))
    if unsafe:
        raise _refuse(label, f"its skops file asks to trust {unsafe}, which are not scikit-learn classes")
    unrecorded = sorted(set(wanted) - recorded)
    if unrecorded:
        raise _refuse(label, f"its skops file needs types {unrecorded} that were not recorded when it was logged")
    return path, list(wanted)


def load_sklearn_safely(model_dir: Path, label: str):
    """Load a downloaded MLflow scikit-learn model after :func:`check_safe_model` (skops only)."""
    import skops.io

    path, trusted = check_safe_model(Path(model_dir), label)
    return skops.io.load(path, trusted=trusted)
