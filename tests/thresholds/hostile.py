"""Crafted ``classifier.skops`` files that run code when a loader trusts what it should not.

Each payload, if it ever runs, creates ``marker`` (a file path); the tests assert it does
not exist. They are built the way an attacker would: from skops' own dump of objects
holding such callables, or by editing the schema JSON inside the zip (skops'
``ConstructorFromReduceNode`` calls ``<module>.<name>(*args)`` at load time).
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import operator
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import skops.io as sio

_IDS = itertools.count(10**15)  # __id__ values no real dump uses: skops memoizes nodes by __id__


def schema_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("schema.json"))


def zipped(schema: dict, *, like: bytes | None = None) -> bytes:
    """A skops file with ``schema`` (and every other member of ``like``, e.g. array files)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        if like is not None:
            with zipfile.ZipFile(io.BytesIO(like)) as src:
                for name in src.namelist():
                    if name != "schema.json":
                        zf.writestr(name, src.read(name))
        zf.writestr("schema.json", json.dumps(schema))
    return out.getvalue()


def _fresh_ids(node: object) -> object:
    if isinstance(node, dict):
        return {k: (next(_IDS) if k == "__id__" else _fresh_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_fresh_ids(v) for v in node]
    return node


def node_of(obj: object) -> dict:
    """The schema node skops writes for ``obj``, with ids of its own."""
    node = schema_of(sio.dumps(obj))
    node.pop("protocol"), node.pop("_skops_version")
    return _fresh_ids(node)


def call_node(module: str, name: str, *args: object) -> dict:
    """A node that calls ``module.name(*args)`` when constructed."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": node_of(tuple(args)),
        "__id__": next(_IDS),
    }


def top_level(node: dict) -> bytes:
    """A skops file whose root is ``node`` (with the protocol header skops writes)."""
    header = {k: v for k, v in schema_of(sio.dumps([])).items() if k in ("protocol", "_skops_version")}
    return zipped(node | header)


def touch_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


@dataclass(frozen=True)
class Payload:
    name: str
    build: Callable[[Path], bytes]  # marker -> file bytes
    refused: tuple[str, ...]  # the type names a loader must refuse
    runs_at_load: bool  # True: constructing it runs the code; False: calling the loaded object does


def _exec(marker: Path) -> bytes:
    return top_level(call_node("builtins", "exec", touch_code(marker)))


def _eval(marker: Path) -> bytes:
    return top_level(call_node("builtins", "eval", f"__import__('builtins').exec({touch_code(marker)!r})"))


def _methodcaller(marker: Path) -> bytes:
    return sio.dumps(operator.methodcaller("system", f"touch {marker}"))  # called on the os module


def _partial(marker: Path) -> bytes:
    return sio.dumps(functools.partial(os.system, f"touch {marker}"))


PAYLOADS = (
    Payload("builtins.exec", _exec, ("builtins.exec",), True),
    Payload("builtins.eval", _eval, ("builtins.eval",), True),
    Payload("operator.methodcaller", _methodcaller, ("operator.methodcaller",), False),
    Payload("functools.partial(os.system)", _partial, ("functools.partial", "posix.system"), False),
)


def with_payload_inside(classifier_file: bytes, marker: Path) -> bytes:
    """A real classifier file whose first calibrated classifier's estimator is replaced by a
    ``builtins.exec`` call: the hostile node hides deep in a legitimate tree."""
    schema = schema_of(classifier_file)
    calibrated = schema["content"]["content"]["calibrated_classifiers_"]["content"][0]
    calibrated["content"]["content"]["estimator"] = call_node("builtins", "exec", touch_code(marker))
    return zipped(schema, like=classifier_file)


def run_naively(data: bytes, marker: Path, payload: Payload) -> None:
    """What the old loader did: trust whatever skops lists (it accepted any ``builtins.*``),
    then use the object. Proves a payload is live: afterwards ``marker`` exists."""
    obj = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    if not payload.runs_at_load:
        obj(os) if isinstance(obj, operator.methodcaller) else obj()


def coef_members(classifier_file: bytes) -> list[str]:
    """The zip members holding each calibrated classifier's ``LogisticRegression.coef_``."""
    calibrated = schema_of(classifier_file)["content"]["content"]["calibrated_classifiers_"]["content"]
    steps = [c["content"]["content"]["estimator"]["content"]["content"]["steps"]["content"] for c in calibrated]
    return [s[1]["content"][1]["content"]["content"]["coef_"]["file"] for s in steps]


def with_arrays(classifier_file: bytes, arrays: dict[str, object], *, compress: int = zipfile.ZIP_STORED) -> bytes:
    """``classifier_file`` with the ``.npy`` members named in ``arrays`` replaced by those arrays
    (the schema is left alone: skops loads whatever shape the array file holds)."""
    import numpy as np

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(classifier_file)) as src, zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            if name in arrays:
                buffer = io.BytesIO()
                np.save(buffer, arrays[name], allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(name), buffer.getvalue(), compress_type=compress)
            else:
                zf.writestr(name, src.read(name))
    return out.getvalue()
