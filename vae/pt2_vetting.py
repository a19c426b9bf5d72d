"""Vetting of a `torch.export.save` archive (.pt2) before `torch.export.load` sees it.

`torch.export.load` is not safe on an untrusted file (tests/test_exported.py shows it running a
crafted payload): it unpickles weights and constants marked `use_pickle` with
`weights_only=False`, falls back to a full unpickle of the sample inputs, evaluates shape
expressions with `sympy.sympify` (which calls `eval`), `exec`s the program's `guards_code`, writes
names from the file into the Python source of the module it builds, and dlopens an AOTInductor
library packed beside the program. So a program is loaded only from a path given on the command
line or from a checkpoint under the model roots (never from an upload), and each archive is first
checked here against what a plain `torch.export.save` of a tensor-in, tensors-out model writes:

- only the archive's known entries: the program's JSON, its payload configs, raw tensor payloads
  and the sample inputs (no compiled code, no legacy pickles, no custom or opaque objects);
- no payload marked `use_pickle`, and sample inputs that load with `torch.load(weights_only=True)`;
- every graph node calls an ATen operator (or `_operator.getitem`), with no subgraph or operator
  arguments; every shape expression is made of symbol names, numbers, operators and torch's
  sympy functions; no `guards_code`; identifiers where the module's source will hold names;
- the signature: one tensor input, and exactly as many tensor outputs as expected.

`sanitize` returns the archive rewritten with every node's debugging metadata (stack traces,
module paths, annotations) dropped, since FX copies pieces of them into the module's source as
comments. Errors are one-line CheckpointErrors naming the file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

from common.checkpoint_files import CheckpointError

MAX_ARCHIVE_BYTES = 8 << 30  # uncompressed, all entries together
MAX_ENTRIES = 100_000
MODEL_JSON = "models/model.json"
WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
SAMPLE_INPUTS = "data/sample_inputs/model.pt"
FIXED_ENTRIES = {
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
    MODEL_JSON,
    WEIGHTS_CONFIG,
    CONSTANTS_CONFIG,
    SAMPLE_INPUTS,
}
PAYLOAD = {"data/weights/": re.compile(r"weight_\d+"), "data/constants/": re.compile(r"tensor_\d+")}
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ATEN_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
OTHER_TARGETS = {"_operator.getitem"}
DENIED_ATEN = {"from_file"}  # reads any file on the server into a tensor
STATE_NAME = re.compile(r"[A-Za-z0-9_.]+")
# What a shape expression may name besides its symbols (s0, u3, ...): the functions the
# deserializer offers it (torch.utils._sympy.functions) and sympy's infinities. Python builtins,
# reachable through sympify's eval, are not among them.
SYMPY_NAMES = {
    "FloorDiv",
    "ModularIndexing",
    "Where",
    "PythonMod",
    "Mod",
    "CleanDiv",
    "CeilToInt",
    "FloorToInt",
    "CeilDiv",
    "LShift",
    "RShift",
    "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat",
    "TruncToInt",
    "RoundToInt",
    "RoundDecimal",
    "ToFloat",
    "FloatPow",
    "PowByNatural",
    "IntTrueDiv",
    "FloatTrueDiv",
    "Max",
    "Min",
    "oo",
    "int_oo",
    "Integer",
    "Abs",
    # The serializer writes a symbol as Symbol('s77', positive=True, integer=True).
    "Symbol",
    "True",
    "False",
    "positive",
    "nonnegative",
    "negative",
    "integer",
    "real",
    "finite",
}
SYMBOL = re.compile(r"[a-z]+\d+")
QUOTED_SYMBOL = re.compile(r"'[a-z]+\d+'")
EXPR_CHARS = re.compile(r"[A-Za-z0-9_+\-*/%(),.= ]*")
TREE_TYPES = {None, "builtins.tuple", "builtins.list"}
REFUSED_ARGS = ("as_graph", "as_custom_obj", "as_operator", "as_sym_float", "as_sym_floats")


def _refuse(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}; refusing to load it")


def _entries(path: Path, archive: zipfile.ZipFile) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """The archive's root folder and its entries by name below it, all of them known ones."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES or sum(i.file_size for i in infos) > MAX_ARCHIVE_BYTES:
        raise _refuse(path, "archive too large")
    roots = {i.filename.split("/", 1)[0] for i in infos}
    if len(roots) != 1 or not all("/" in i.filename for i in infos):
        raise _refuse(path, "not a torch.export archive (expected one root folder)")
    root = roots.pop()
    by_name = {i.filename[len(root) + 1 :]: i for i in infos}
    for name in by_name:
        folder, _, leaf = name.rpartition("/")
        pattern = PAYLOAD.get(folder + "/")
        if name not in FIXED_ENTRIES and not (pattern and pattern.fullmatch(leaf)):
            raise _refuse(path, f"unexpected entry {name!r} (compiled code or pickled objects)")
    for name in ("archive_format", "archive_version", MODEL_JSON, WEIGHTS_CONFIG, SAMPLE_INPUTS):
        if name not in by_name:
            raise _refuse(path, f"not a torch.export archive (no {name})")
    return root, by_name


def _json(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    try:
        obj = json.loads(archive.read(info))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _refuse(path, f"{info.filename} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _refuse(path, f"{info.filename} is not a JSON object")
    return obj


def _check_payloads(path: Path, config: dict, folder: str, present: set[str]) -> None:
    entries = config.get("config")
    if not isinstance(entries, dict):
        raise _refuse(path, f"{folder} config has no 'config' object")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise _refuse(path, f"{folder} entry {fqn!r} is a pickle (code can run from it)")
        leaf = meta.get("path_name")
        if not isinstance(leaf, str) or not PAYLOAD[folder].fullmatch(leaf):
            raise _refuse(path, f"{folder} entry {fqn!r} is not a raw tensor payload")
        if folder + leaf not in present:
            raise _refuse(path, f"{folder} entry {fqn!r}: payload {leaf} missing")
        if not STATE_NAME.fullmatch(str(fqn)):
            raise _refuse(path, f"{folder} entry name {fqn!r} is not a parameter path")


def _check_sample_inputs(path: Path, data: bytes) -> None:
    # Lazy: torch only for the safe unpickler; the rest of the vetting is plain JSON.
    import torch

    if not data:
        return
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:  # noqa: BLE001 (any failure of the safe unpickler means refuse)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise _refuse(path, f"sample inputs hold more than tensors ({first[:120]})") from None


def _check_expr(path: Path, expr: object) -> None:
    """Names, numbers, operators and keyword flags only: no other quoted string, attribute of a
    name, or name outside SYMPY_NAMES and the symbols (sympify evaluates the string)."""
    bare = QUOTED_SYMBOL.sub("s0", expr) if isinstance(expr, str) else ""
    if not isinstance(expr, str) or not EXPR_CHARS.fullmatch(bare) or "==" in bare:
        raise _refuse(path, f"shape expression {str(expr)[:60]!r} holds code")
    for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare):
        if name not in SYMPY_NAMES and not SYMBOL.fullmatch(name):
            raise _refuse(path, f"shape expression {expr[:60]!r} names {name!r}")


def _walk(path: Path, obj: object) -> None:
    """Every shape expression, argument kind and graph name anywhere in the program's JSON."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "expr_str":
                _check_expr(path, value)
            elif key in REFUSED_ARGS and value is not None:
                raise _refuse(path, f"graph argument of kind {key} (subgraphs or objects)")
            elif key == "name" and isinstance(value, str) and not IDENTIFIER.fullmatch(value):
                raise _refuse(path, f"graph name {value[:60]!r} is not an identifier")
            else:
                _walk(path, value)
    elif isinstance(obj, list):
        for item in obj:
            _walk(path, item)


def _check_tree(path: Path, spec: object) -> None:
    """A pytree spec of plain tuples, lists and leaves (an input dict only when empty)."""
    if spec is None:
        return
    try:
        _, tree = json.loads(spec)
    except (TypeError, ValueError):
        raise _refuse(path, "unreadable input/output structure") from None

    def visit(node: object) -> None:
        if not isinstance(node, dict):
            raise _refuse(path, "unreadable input/output structure")
        kind, children = node.get("type"), node.get("children_spec") or []
        if kind == "builtins.dict" and (node.get("context") not in ("[]", None) or children):
            raise _refuse(path, "keyword inputs or dict outputs (expected plain tensors)")
        if kind not in TREE_TYPES and kind != "builtins.dict":
            raise _refuse(path, f"input/output container {kind!r} (expected tuples of tensors)")
        for child in children:
            visit(child)

    visit(tree)


def _check_program(path: Path, program: dict, outputs: int) -> None:
    gm = program.get("graph_module")
    if not isinstance(gm, dict) or not isinstance(gm.get("graph"), dict):
        raise _refuse(path, "no graph in the program")
    _check_signature(path, gm.get("signature") or {}, outputs)
    if program.get("guards_code"):
        raise _refuse(path, "program carries guard code")
    if gm.get("treespec_namedtuple_fields"):
        raise _refuse(path, "named-tuple inputs or outputs (expected plain tensors)")
    for expr in program.get("range_constraints") or {}:
        _check_expr(path, expr)
    for node in gm["graph"].get("nodes", []):
        target = node.get("target") if isinstance(node, dict) else None
        if not isinstance(target, str) or not (
            (ATEN_TARGET.fullmatch(target) and target.split(".")[3] not in DENIED_ATEN)
            or target in OTHER_TARGETS
        ):
            raise _refuse(path, f"graph calls {str(target)[:60]!r} (only ATen operators load)")
    _walk(path, gm)
    for call in gm.get("module_call_graph") or []:
        sig = (call or {}).get("signature") or {}
        for name in sig.get("forward_arg_names") or []:
            if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
                raise _refuse(path, f"argument name {str(name)[:60]!r} is not an identifier")
        _check_tree(path, sig.get("in_spec"))
        _check_tree(path, sig.get("out_spec"))


def _check_signature(path: Path, signature: dict, outputs: int) -> None:
    """One tensor input beside the weights; `outputs` tensor outputs."""
    kinds = [next(iter(s), None) for s in signature.get("input_specs", []) if isinstance(s, dict)]
    if kinds.count("user_input") != 1 or set(kinds) - {
        "user_input",
        "parameter",
        "buffer",
        "tensor_constant",
    }:
        raise _refuse(path, f"graph inputs {sorted(set(kinds))} (expected one tensor input)")
    user_in = next(s["user_input"] for s in signature["input_specs"] if "user_input" in s)
    if "as_tensor" not in (user_in.get("arg") or {}):
        raise _refuse(path, "graph input is not a tensor")
    outs = signature.get("output_specs", [])
    kinds = [next(iter(s), None) for s in outs if isinstance(s, dict)]
    if kinds != ["user_output"] * outputs or not all(
        "as_tensor" in (s["user_output"].get("arg") or {}) for s in outs
    ):
        raise _refuse(path, f"graph outputs {kinds} (expected {outputs} tensor output(s))")


def _drop_metadata(program: dict) -> None:
    """Each node's and the module's debugging metadata (stack traces, module paths,
    annotations): nothing runs on it, and FX copies pieces of it into generated source."""
    gm = program.get("graph_module") or {}
    for node in (gm.get("graph") or {}).get("nodes") or []:
        node["metadata"] = {}
    gm["metadata"] = {}


def sanitize(path: Path, data: bytes, outputs: int) -> bytes:
    """The archive in `data` (read from `path`) checked as the module docstring says, with its
    nodes' debugging metadata dropped; `outputs` is the number of tensors the program returns."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _refuse(path, f"not a torch.export archive ({e})") from None
    with archive:
        root, by_name = _entries(path, archive)
        present = set(by_name)
        _check_payloads(
            path, _json(path, archive, by_name[WEIGHTS_CONFIG]), "data/weights/", present
        )
        if CONSTANTS_CONFIG in by_name:
            constants = _json(path, archive, by_name[CONSTANTS_CONFIG])
            _check_payloads(path, constants, "data/constants/", present)
        _check_sample_inputs(path, archive.read(by_name[SAMPLE_INPUTS]))
        program = _json(path, archive, by_name[MODEL_JSON])
        try:
            _drop_metadata(program)
            _check_program(path, program, outputs)
        except (AttributeError, TypeError, KeyError, IndexError, StopIteration) as e:
            raise _refuse(path, f"malformed program ({type(e).__name__}: {e})") from None
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as clean:
            for name, info in by_name.items():
                body = json.dumps(program).encode() if name == MODEL_JSON else archive.read(info)
                clean.writestr(f"{root}/{name}", body)
    return out.getvalue()
