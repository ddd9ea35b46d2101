"""Load hardware profiles from TOML: the built-in ones by name, or a user's file by path.

Every malformed input raises :class:`~smart_onnx.errors.ProfileError` with one sentence
that names the profile and the field at fault. The format is documented in
``docs/profiles.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from smart_onnx.errors import ProfileError
from smart_onnx.hw.constraints import MODES, OP_KEYS, PRECISIONS, OpRule, Profile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["DEFAULT_PROFILE", "builtin_names", "list_profiles", "load_profile", "parse_profile", "profile_from_dict"]

DEFAULT_PROFILE = "npu-block"
_TOP_FIELDS = ("name", "description", "mode", "channel_alignment", "min_channels", "max_layer_sparsity",
               "dense_ops", "dense_layers", "precisions", "references", "ops")
_CONDITIONS = ("in_channel_multiple", "out_channel_multiple", "min_reduction", "min_out_channels", "min_macs")
_OP_FIELDS = ("blocks", "nm", *_CONDITIONS)
_PRUNABLE = tuple(k for k in OP_KEYS if k != "default")
_NO_KERNEL = ("Gemm", "MatMul")
_MAX_BLOCK_RANK = 5  # O x I x up to three kernel dims (Conv3d)


def builtin_names() -> list[str]:
    """Names of the profiles shipped with the package, the default first."""
    names = sorted(p.name[: -len(".toml")] for p in _builtin_dir().iterdir() if p.name.endswith(".toml"))
    return sorted(names, key=lambda n: n != DEFAULT_PROFILE)


def list_profiles() -> list[Profile]:
    """Every built-in profile, the default first."""
    return [load_profile(name) for name in builtin_names()]


def load_profile(name_or_path: str | os.PathLike[str] | None = None) -> Profile:
    """A built-in profile by name, or a profile file by path.

    Args:
        name_or_path: a built-in name (``npu-block``), a path to a ``.toml`` file, or
            None for the default profile.

    Raises:
        ProfileError: the name is not built in and no such file exists, the file cannot
            be read, or its content is malformed.
    """
    key = DEFAULT_PROFILE if name_or_path is None else os.fspath(name_or_path)
    if key in builtin_names():
        text = (_builtin_dir() / f"{key}.toml").read_text(encoding="utf-8")
        return parse_profile(text, source="built-in", default_name=key)
    path = Path(key)
    if not path.is_file():
        if path.suffix != ".toml" and not path.parent.parts:
            raise ProfileError(
                f"unknown target {key!r}; built-in targets are {', '.join(builtin_names())}, "
                "or give the path of a .toml profile"
            )
        raise ProfileError(f"profile file {key!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"profile file {key!r} cannot be read: {e}") from e
    return parse_profile(text, source=str(path), default_name=path.stem)


def parse_profile(text: str, *, source: str = "<string>", default_name: str | None = None) -> Profile:
    """A profile from TOML text (see :func:`profile_from_dict` for the fields)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {source} is not valid TOML: {e}") from e
    return profile_from_dict(data, source=source, default_name=default_name)


def profile_from_dict(
    data: Mapping[str, Any], *, source: str = "<dict>", default_name: str | None = None
) -> Profile:
    """A profile from already-parsed TOML data.

    Args:
        data: the top-level table.
        source: where it came from (``built-in`` or a path), for messages.
        default_name: the name when ``data`` has none (a file's stem).

    Raises:
        ProfileError: an unknown field, a wrong type, a malformed block shape or N:M
            pattern, ``N >= M``, an alignment or minimum below 1, a sparsity outside
            [0, 1], a dense op that is not prunable, or a mode the profile cannot serve.
    """
    r = _Reader(source)
    r.unknown(data, _TOP_FIELDS, "")
    name = data.get("name", default_name)
    if name is None:
        raise r.fail("name", "is missing (give the profile a short name)")
    ops = r.ops(data.get("ops", {}))
    profile = Profile(
        name=r.text(name, "name", nonempty=True),
        description=r.text(data.get("description", ""), "description"),
        ops=ops,
        channel_alignment=r.positive_int(data.get("channel_alignment", 1), "channel_alignment"),
        min_channels=r.positive_int(data.get("min_channels", 1), "min_channels"),
        max_layer_sparsity=r.fraction(data.get("max_layer_sparsity", 1.0), "max_layer_sparsity"),
        dense_ops=tuple(r.choice(v, f"dense_ops[{i}]", _PRUNABLE)
                        for i, v in enumerate(r.array(data.get("dense_ops", []), "dense_ops"))),
        dense_layers=tuple(r.text(v, f"dense_layers[{i}]", nonempty=True)
                           for i, v in enumerate(r.array(data.get("dense_layers", []), "dense_layers"))),
        precisions=tuple(r.choice(v, f"precisions[{i}]", PRECISIONS)
                         for i, v in enumerate(r.array(data.get("precisions", []), "precisions"))),
        references=tuple(r.text(v, f"references[{i}]", nonempty=True)
                         for i, v in enumerate(r.array(data.get("references", []), "references"))),
        source=source,
    )
    modes = profile.modes
    mode = r.choice(data.get("mode", modes[0]), "mode", MODES)
    if mode not in modes:
        raise r.fail("mode", f"is {mode!r}, but the profile allows no {mode} pattern for any op (modes: {modes})")
    return replace(profile, mode=mode)


class _Reader:
    """Type checks that name the field at fault."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> ProfileError:
        return ProfileError(f"profile {self.source}: field {field!r} {problem}")

    def unknown(self, table: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in known:
                raise self.fail(prefix + key, f"is unknown; known fields here are {', '.join(known)}")

    def text(self, value: Any, field: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str) or (nonempty and not value.strip()):
            raise self.fail(field, f"must be a{' non-empty' if nonempty else ''} string, got {value!r}")
        return value

    def positive_int(self, value: Any, field: str) -> int:
        return self.count(value, field, least=1)

    def count(self, value: Any, field: str, *, least: int = 0) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(field, f"must be an integer, got {value!r}")
        if value < least:
            raise self.fail(field, f"must be at least {least}, got {value}")
        return value

    def fraction(self, value: Any, field: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(field, f"must be a number, got {value!r}")
        if not 0.0 <= value <= 1.0:
            raise self.fail(field, f"must lie in [0, 1], got {value}")
        return float(value)

    def array(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(field, f"must be an array, got {value!r}")
        return value

    def choice(self, value: Any, field: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(field, f"is {value!r}; choose one of {', '.join(allowed)}")
        return value

    def ops(self, table: Any) -> tuple[tuple[str, OpRule], ...]:
        if not isinstance(table, Mapping):
            raise self.fail("ops", f"must be a table of op types, got {table!r}")
        self.unknown(table, OP_KEYS, "ops.")
        out = []
        for op, entry in table.items():
            where = f"ops.{op}"
            if not isinstance(entry, Mapping):
                raise self.fail(where, f"must be a table with {' and/or '.join(_OP_FIELDS)}, got {entry!r}")
            self.unknown(entry, _OP_FIELDS, where + ".")
            blocks = tuple(self.block(v, f"{where}.blocks[{i}]", op)
                           for i, v in enumerate(self.array(entry.get("blocks", []), f"{where}.blocks")))
            nm = tuple(self.nm(v, f"{where}.nm[{i}]") for i, v in enumerate(self.array(entry.get("nm", []),
                                                                                          f"{where}.nm")))
            conditions = {key: self.positive_int(entry[key], f"{where}.{key}") if key != "min_macs"
                          else self.count(entry[key], f"{where}.{key}") for key in _CONDITIONS if key in entry}
            out.append((op, OpRule(blocks=blocks, nm=nm, **conditions)))
        return tuple(out)

    def block(self, value: Any, field: str, op: str) -> tuple[int, ...]:
        text = self.text(value, field)
        try:
            dims = tuple(int(d) for d in text.lower().split("x"))
        except ValueError:
            dims = ()
        if not 2 <= len(dims) <= _MAX_BLOCK_RANK or any(d < 1 for d in dims):
            raise self.fail(field, f"is {text!r}, not a block shape OxI[xkHxkW] of positive sizes (e.g. \"16x8x1x1\")")
        if op in _NO_KERNEL and any(d != 1 for d in dims[2:]):
            raise self.fail(field, f"is {text!r}, but {op} has no kernel dims (use e.g. \"16x8\")")
        return dims

    def nm(self, value: Any, field: str) -> tuple[int, int]:
        text = self.text(value, field)
        parts = text.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise self.fail(field, f"is {text!r}, not an N:M pattern (e.g. \"2:4\")")
        n, m = int(parts[0]), int(parts[1])
        if not 0 < n < m:
            raise self.fail(field, f"is {text!r}, but an N:M pattern needs 0 < N < M")
        return n, m


def _builtin_dir() -> Any:
    return resources.files("smart_onnx.hw") / "profiles"
